"""Block until `manage.py migrate --check` reports no pending migration (init container)."""
import argparse
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks (default 5)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    attempt = 0
    while True:
        attempt += 1
        # --check exits non-zero while migrations are pending or the database is unreachable.
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--check"],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            print(f"migrations applied (check {attempt})", file=sys.stderr)
            return 0
        if time.monotonic() >= deadline:
            print(f"migrations still pending after {args.timeout:.0f}s:\n{result.stdout}{result.stderr}", file=sys.stderr)
            return 1
        last = (result.stderr or result.stdout).strip().splitlines()
        print(f"waiting for migrations (check {attempt}): {last[-1] if last else 'pending'}", file=sys.stderr)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
