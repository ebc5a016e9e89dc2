"""dcgm-exporter's /metrics, scraped: the Prometheus text format parsed into samples.

`ExpositionParser` turns one target's page into samples. A page is the same label strings every
scrape (one per GPU, per MIG instance and per pod using it), with one line per family and device:

    DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-…",pci_bus_id="…",device="nvidia0",modelName="…",Hostname="node-1"} 34

so a line is cut with str methods (the first `{`, the last `}`), and what the text between the braces
means (the device and the labels) is parsed once per distinct text and cached, as is each family
name's fate (kept, ignored, refused). A line costs two dict look-ups and a float().

`scrape` fetches every target each interval, concurrently (a bounded thread pool), and yields the
samples of each page as it arrives; every sample of one page carries that scrape's time unless the
line gives its own (milliseconds). A target that cannot be read (refused, timed out, an HTTP error, a
truncated body) is logged when it goes down and when it comes back, counted, and tried again at the
next interval.
"""
import base64
import functools
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from telemetry.ingest.streamer.sources import RejectHandler, RowError, SourceFormatError, mig_instance
from telemetry.ingest.wire import GpuInfo, Labels, Sample, gpu_problem
from telemetry.models import METRIC_NAME_MAX

logger = logging.getLogger(__name__)

DEFAULT_METRICS = r"DCGM_FI_.*|DCGM_EXP_.*"
# A page is some 100 KiB for 8 GPUs × 40 fields; anything near this is not dcgm-exporter's.
MAX_BODY_BYTES = 64 * 1024 * 1024
_CACHE_LIMIT = 16384
_INF = float("inf")

# Labels that are the device's attributes or the Labels' own fields; every other one is an extra label.
_HOST_LABELS = ("Hostname", "hostname")  # dcgm-exporter 4.5 writes `hostname`
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}


class ScrapeError(Exception):
    """A scrape that gave no page: the message is the reason, as logged when the target goes down."""


class _Refused(str):
    """A cached verdict on a family name or a label text: the line is rejected for this reason."""


_IGNORED = False  # a family name that is well formed but not selected


def unescape(value: str) -> str:
    """A label value as written between its quotes, with `\\\\`, `\\"` and `\\n` undone."""
    if "\\" not in value:
        return value

    def undo(match: re.Match) -> str:
        found = _UNESCAPED.get(match.group(1))
        if found is None:
            raise RowError(f"invalid escape \\{match.group(1)} in a label value")
        return found

    return _ESCAPE.sub(undo, value)


def parse_label_text(text: str) -> list[tuple[str, str]]:
    """`name="value",…` (what stands between a line's braces) as (name, value) pairs, unescaped."""
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(text)
    while position < end:
        match = _LABEL_PAIR.match(text, position)
        if match is None:
            if text[position:].strip() == "":
                break
            raise RowError(f"unreadable labels at {text[position:position + 40]!r}")
        pairs.append((match.group(1), unescape(match.group(2))))
        position = match.end()
    return pairs


def _valid_text(text: str) -> bool:
    """False if `text` holds bytes that were not UTF-8 (decoded as lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def device_and_labels(pairs: Iterable[tuple[str, str]], default_host: str = "") -> tuple[GpuInfo, Labels]:
    """The device a line's labels name and the labels it keeps, as the DCGM CSV reader makes them.

    UUID, gpu (the index), device, modelName, Hostname or hostname, GPU_I_ID and GPU_I_PROFILE make
    the device (a MIG instance when GPU_I_ID is there); container, pod and namespace are the Labels'
    fields; every other label (pci_bus_id, DCGM_FI_DRIVER_VERSION, err_msg, …) is an extra label.
    Without a host label the host is `default_host` (the target's host name).
    """
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise RowError(f"label {name} given twice")
        found[name] = value
    uuid = found.pop("UUID", "").strip()
    if not uuid:
        raise RowError("no UUID label")
    index_text = found.pop("gpu", "0")
    try:
        index = int(index_text)
    except ValueError:
        raise RowError(f"bad gpu label {index_text!r}") from None
    if not 0 <= index <= 32767:
        raise RowError(f"gpu label {index} out of range")
    hosts = [found.pop(name, "") for name in _HOST_LABELS]
    hostname = next((host for host in hosts if host), default_host)
    instance, profile = mig_instance(found.pop("GPU_I_ID", ""), found.pop("GPU_I_PROFILE", ""))
    gpu = GpuInfo(uuid, hostname, index, found.pop("device", ""), found.pop("modelName", ""), instance, profile)
    problem = gpu_problem(gpu)
    if problem is not None:
        raise RowError(problem)
    labels = Labels(found.pop("container", ""), found.pop("pod", ""), found.pop("namespace", ""),
                    tuple(sorted(found.items())))
    return gpu, labels


# Sample's own __new__ is a Python function; tuple.__new__ makes the same Sample in C.
_new_sample = tuple.__new__


class ExpositionParser:
    """One target's pages, parsed; the family names and label texts seen are cached across pages.

    `select` tells a family to keep by its name. Comments (`# HELP`, `# TYPE`) and blank lines are
    skipped; lines of other families are ignored without a word; a line that does not parse, or whose
    labels name no GPU, is reported to `on_reject` with its line number. NaN and ±Inf values are
    skipped and counted in `nonfinite` (and logged once per family).
    """

    def __init__(self, source: str, *, select: Callable[[str], object], default_host: str = "") -> None:
        self.source = source
        self.default_host = default_host
        self._select = select
        # family name as written → its name (kept), _IGNORED, or a _Refused reason
        self._names: dict[str, object] = {}
        # label text as written → (GpuInfo, Labels), or (None, _Refused reason)
        self._label_texts: dict[str, tuple] = {}
        self._interned: dict[Labels, Labels] = {}
        self._nonfinite_families: set[str] = set()
        self.nonfinite = 0

    def parse(self, text: str, scrape_us: int, on_reject: RejectHandler) -> list[Sample]:
        """The samples of one page, each at `scrape_us` (µs since the epoch) unless its line gives a time."""
        samples: list[Sample] = []
        append = samples.append
        names, label_texts = self._names, self._label_texts
        source = self.source
        new, sample_type, inf = _new_sample, Sample, _INF
        for number, line in enumerate(text.split("\n"), 1):
            if not line or line[0] == "#":
                continue
            brace = line.find("{")
            if brace < 0:
                self._bare_line(line, number, scrape_us, on_reject)
                continue
            metric = names.get(line[:brace])
            if metric.__class__ is not str:
                metric = self._name(line[:brace])
                if metric is _IGNORED:
                    continue
                if metric.__class__ is _Refused:
                    on_reject(source, number, metric)
                    continue
            close = line.rfind("}")
            if close < brace:
                on_reject(source, number, "no closing brace")
                continue
            entry = label_texts.get(line[brace + 1:close])
            if entry is None:
                entry = self._labels(line[brace + 1:close])
            gpu, labels = entry
            if gpu is None:
                on_reject(source, number, labels)
                continue
            try:
                value = float(line[close + 1:])
                timestamp = scrape_us
            except ValueError:
                try:
                    value, timestamp = _value_and_time(line[close + 1:], scrape_us)
                except RowError as exc:
                    on_reject(source, number, str(exc))
                    continue
            if -inf < value < inf:
                append(new(sample_type, (gpu, metric, timestamp, value, labels)))
            else:
                self._skip_nonfinite(metric)
        return samples

    def _name(self, written: str) -> object:
        """A family name's fate (see `_names`), remembered."""
        verdict = self._names.get(written)
        if verdict is not None:
            return verdict
        name = written.strip()
        if not _METRIC_NAME.fullmatch(name):
            verdict = _Refused(f"not a metric line: {written[:60]!r}")
        elif not self._select(name):
            verdict = _IGNORED
        elif len(name) > METRIC_NAME_MAX:
            verdict = _Refused(f"metric name longer than {METRIC_NAME_MAX} characters")
        else:
            verdict = name
        if len(self._names) >= _CACHE_LIMIT:
            self._names.clear()
        self._names[written] = verdict
        return verdict

    def _labels(self, text: str) -> tuple:
        """What a label text means (see `_label_texts`), remembered."""
        try:
            if not _valid_text(text):
                raise RowError("not valid UTF-8")
            gpu, labels = device_and_labels(parse_label_text(text), self.default_host)
            labels = self._interned.setdefault(labels, labels)
            entry: tuple = (gpu, labels)
        except RowError as exc:
            entry = (None, _Refused(exc))
        if len(self._label_texts) >= _CACHE_LIMIT:
            self._label_texts.clear()
            self._interned.clear()
        self._label_texts[text] = entry
        return entry

    def _bare_line(self, line: str, number: int, scrape_us: int, on_reject: RejectHandler) -> None:
        """A line without labels: checked whole (it may be a page that is not the text format), then
        ignored or refused, since a sample without labels names no GPU."""
        parts = line.split(None, 1)
        if not parts:
            return
        verdict = self._name(parts[0])
        if verdict.__class__ is _Refused:
            on_reject(self.source, number, verdict)
            return
        try:
            _value_and_time(parts[1] if len(parts) > 1 else "", scrape_us)
        except RowError as exc:
            on_reject(self.source, number, str(exc))
            return
        if verdict is not _IGNORED:
            on_reject(self.source, number, "no labels (no UUID label)")

    def _skip_nonfinite(self, metric: str) -> None:
        self.nonfinite += 1
        if metric not in self._nonfinite_families and len(self._nonfinite_families) < 1000:
            self._nonfinite_families.add(metric)
            logger.info("%s: %s has a NaN or infinite value; such values are skipped and counted", self.source, metric)


def _value_and_time(text: str, scrape_us: int) -> tuple[float, int]:
    """(value, time in µs) of what follows a line's labels: a value and an optional time in milliseconds."""
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise RowError("expected a value and an optional timestamp after the labels"
                       if parts else "no value")
    try:
        value = float(parts[0])
    except ValueError:
        raise RowError(f"bad number {parts[0][:40]!r}") from None
    if len(parts) == 1:
        return value, scrape_us
    try:
        return value, int(parts[1]) * 1000
    except ValueError:
        raise RowError(f"bad timestamp {parts[1][:40]!r} (milliseconds expected)") from None


# --- Targets ---


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def check_url(url: str) -> str:
    """`url` if it is an http or https URL with a host; otherwise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None
    return url


def shown(url: str) -> str:
    """`url` for logs: a password in it is masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return parts._replace(netloc=netloc).geturl()


def _list_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


def is_url_list(path: Path) -> bool:
    """Whether `path` is a file listing URLs: its first line that is not blank or a comment is a URL."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            head = stream.read(1 << 16)
    except OSError:
        return False
    return is_url(next(_list_lines(head), (0, ""))[1])


def read_url_list(path: Path) -> list[str]:
    """The URLs a file lists, one per line (`#` starts a comment); ValueError names a bad line."""
    urls = []
    for number, line in _list_lines(path.read_text(encoding="utf-8")):
        try:
            urls.append(check_url(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return urls


def in_url_share(url: str, shard: tuple[int, int]) -> bool:
    """Whether target `url` is in shard (index, count) of the targets."""
    index, count = shard
    return zlib.crc32(url.encode()) % count == index


class Targets:
    """The URLs to scrape: those given, and those of the list files, re-read when a file changes.

    With a shard (I, N) other than (0, 1), only the URLs in share I of N (crc32 of the URL) are
    scraped, so N streamers sharing one list scrape each node once.
    """

    def __init__(self, urls: Iterable[str] = (), files: Iterable[str] = (), *, shard: tuple[int, int] = (0, 1)) -> None:
        self._urls = [check_url(url) for url in urls]
        self._files = {Path(name): (None, []) for name in files}  # path → (mtime_ns, its URLs)
        self._shard = shard
        for path in self._files:
            try:
                self._files[path] = (path.stat().st_mtime_ns, read_url_list(path))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise SourceFormatError(f"URL list: {exc}") from None

    def current(self) -> list[str]:
        """The URLs of now, in order, each once; a list file that cannot be read keeps its previous URLs."""
        for path, (seen, urls) in self._files.items():
            try:
                mtime = path.stat().st_mtime_ns
                if mtime != seen:
                    urls = read_url_list(path)
                    logger.info("URL list %s: %d URLs", path, len(urls))
                    self._files[path] = (mtime, urls)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if seen is not None:
                    logger.warning("URL list %s unreadable, keeping its %d URLs: %s", path, len(urls), exc)
                    self._files[path] = (None, urls)
        every = self._urls + [url for _, urls in self._files.values() for url in urls]
        unique = list(dict.fromkeys(every))
        if self._shard != (0, 1):
            unique = [url for url in unique if in_url_share(url, self._shard)]
        return unique


# --- One scrape ---


_HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "gpu-telemetry-streamer",
}


def fetch(url: str, timeout: float, *, max_bytes: int = MAX_BODY_BYTES) -> tuple[int, str]:
    """(scrape time in µs, page text) of one GET of `url`, all of it within `timeout` seconds.

    Raises ScrapeError for everything that gives no whole page: refused, timed out, an HTTP status
    other than 200, a body shorter than its Content-Length, a gzip stream cut short.
    """
    scrape_us = time.time_ns() // 1000
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    headers = dict(_HEADERS)
    if parts.username is not None:
        credentials = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=_tls_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", path, headers=headers)
        # Kept: the connection lets go of its socket when the response is the last on it (HTTP/1.0,
        # Connection: close), and the reads' time-outs are set on it.
        sock = connection.sock
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status} {response.reason}".rstrip())
        body = _read_body(sock, response, deadline, max_bytes)
        encoding = (response.getheader("Content-Encoding") or "").strip().lower()
        if encoding == "gzip":
            body = _gunzip(body, max_bytes)
        elif encoding not in ("", "identity"):
            raise ScrapeError(f"unsupported Content-Encoding {encoding!r}")
    except ScrapeError:
        raise
    except TimeoutError:
        raise ScrapeError(f"timed out after {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ScrapeError("connection refused") from None
    except ConnectionResetError:
        raise ScrapeError("connection reset") from None
    except http.client.IncompleteRead:
        raise ScrapeError("truncated body (chunked transfer cut short)") from None
    except http.client.RemoteDisconnected:
        raise ScrapeError("connection closed without a response") from None
    except http.client.HTTPException as exc:
        raise ScrapeError(f"bad HTTP response: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise ScrapeError(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    finally:
        connection.close()
    return scrape_us, body.decode("utf-8", "surrogateescape")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's CA certificates, loaded once rather than at every scrape."""
    return ssl.create_default_context()


def _read_body(sock: socket.socket, response: http.client.HTTPResponse, deadline: float, max_bytes: int) -> bytes:
    """The response's body, read as it comes (read1) so that the deadline bounds the whole of it."""
    length_header = response.getheader("Content-Length")
    chunks = []
    received = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = response.read1(1 << 16)
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise ScrapeError(f"body larger than {max_bytes} bytes")
        chunks.append(chunk)
    if length_header is not None and not response.chunked:
        try:
            expected = int(length_header)
        except ValueError:
            raise ScrapeError(f"bad Content-Length {length_header!r}") from None
        if received < expected:
            raise ScrapeError(f"truncated body ({received} of {expected} bytes)")
    return b"".join(chunks)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
    try:
        text = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ScrapeError(f"bad gzip stream: {exc}") from None
    if len(text) > max_bytes:
        raise ScrapeError(f"body larger than {max_bytes} bytes once unzipped")
    if not inflater.eof:
        raise ScrapeError("truncated body (gzip stream cut short)")
    return text


# --- Scraping every interval ---


@dataclass
class ScrapeStats:
    """What scraping did: the streamer's progress lines show it."""

    targets: int = 0
    down: int = 0
    scrapes: int = 0
    failed: int = 0
    nonfinite: int = 0
    late_rounds: int = 0

    def line(self) -> str:
        return (f"exporters: {self.targets}, {self.down} down, {self.scrapes} scrapes, {self.failed} failed, "
                f"{self.nonfinite} non-finite values skipped")


class _Target:
    """One URL's parser and state: up, or down since when and why (logged only when that changes)."""

    def __init__(self, url: str, select: Callable[[str], object]) -> None:
        self.url = url
        self.name = shown(url)
        self.parser = ExpositionParser(self.name, select=select, default_host=urlsplit(url).hostname or "")
        self.up: bool | None = None  # None: not scraped yet
        self.down_since = 0.0
        self.failures = 0

    def succeeded(self, samples: int) -> None:
        if self.up is None:
            logger.info("exporter %s up: %d samples", self.name, samples)
        elif not self.up:
            logger.info("exporter %s back after %d failed scrapes (%.0f s): %d samples", self.name, self.failures,
                        time.monotonic() - self.down_since, samples)
        self.up, self.failures = True, 0

    def failed(self, reason: str, interval: float) -> None:
        if self.up is not False:
            logger.warning("exporter %s down: %s (retrying every %g s)", self.name, reason, interval)
            self.up, self.down_since = False, time.monotonic()
        self.failures += 1


def scrape(
    targets: Targets,
    *,
    interval: float,
    timeout: float,
    metrics: str = DEFAULT_METRICS,
    stop: threading.Event,
    on_reject: RejectHandler,
    stats: ScrapeStats | None = None,
    tick: float = 1.0,
    concurrency: int = 16,
    fetcher: Callable[[str, float], tuple[int, str]] = fetch,
) -> Iterator[Sample | None]:
    """Every target's samples every `interval` seconds until `stop` is set, then what is in flight.

    Pages are fetched by up to `concurrency` threads at once and parsed here, in the order they
    arrive. Between rounds it yields None every `tick` seconds, so that the caller's hold can send
    what came of age while nothing arrives. A round that takes longer than `interval` (targets
    timing out) is followed by the next at once; a `timeout` longer than `interval` is cut to it.
    """
    stats = stats if stats is not None else ScrapeStats()
    if timeout > interval:
        logger.info("scrape time-out %g s cut to the %g s interval", timeout, interval)
        timeout = interval
    select = re.compile(metrics).fullmatch
    known: dict[str, _Target] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scrape")
    next_round = time.monotonic()
    late = False
    logger.info("scraping %d exporter(s) every %g s (time-out %g s, up to %d at once), families %s",
                len(targets.current()), interval, timeout, concurrency, metrics)
    try:
        while not stop.is_set():
            urls = targets.current()
            known = {url: known.get(url) or _Target(url, select) for url in urls}
            stats.targets = len(known)
            futures: dict[Future, _Target] = {pool.submit(fetcher, url, timeout): known[url] for url in urls}
            for future in as_completed(futures):
                if stop.is_set():
                    for waiting in futures:
                        waiting.cancel()  # not started yet: the stop comes before them
                if future.cancelled():
                    continue
                target = futures[future]
                try:
                    scrape_us, text = future.result()
                except ScrapeError as exc:
                    stats.failed += 1
                    target.failed(str(exc), interval)
                    continue
                parser = target.parser
                before = parser.nonfinite
                samples = parser.parse(text, scrape_us, on_reject)
                stats.scrapes += 1
                stats.nonfinite += parser.nonfinite - before
                target.succeeded(len(samples))
                yield from samples
            stats.down = sum(target.up is False for target in known.values())
            next_round += interval
            now = time.monotonic()
            if next_round < now:
                stats.late_rounds += 1
                if not late:
                    logger.warning("a round of scrapes took longer than the %g s interval: the next starts at once",
                                   interval)
                late, next_round = True, now
            else:
                late = False
            while not stop.is_set() and (now := time.monotonic()) < next_round:
                yield None
                stop.wait(min(tick, next_round - now))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
