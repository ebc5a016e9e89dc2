"""Wait until PostgreSQL at DATABASE_URL accepts connections (the `migrate` role's first step)."""
import argparse
import os
import sys
import time

import psycopg


def wait_for_db(*, url: str, timeout: float, interval: float = 2.0) -> bool:
    """Return True once a connection succeeds, False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            print(f"database is up (attempt {attempt})", file=sys.stderr)
            return True
        except psycopg.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(f"database not reachable after {timeout:.0f}s: {exc}".strip(), file=sys.stderr)
                return False
            print(f"waiting for database (attempt {attempt}): {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                  file=sys.stderr)
            time.sleep(min(interval, remaining))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print("DATABASE_URL is not set: nothing to wait for", file=sys.stderr)
        return 0
    return 0 if wait_for_db(url=url, timeout=args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
