"""Exit 0 when every URL given answers HTTP 200 (the chart's `helm test` pod)."""
import argparse
import sys
import time
import urllib.error
import urllib.request


def check(*, url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URL from the chart
            body = response.read(200).decode("utf-8", "replace")
            return response.status == 200, f"{response.status} {body}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    parser.add_argument("--retries", type=int, default=5, help="attempts per URL (default 5)")
    args = parser.parse_args(argv)
    for url in args.urls:
        for attempt in range(1, args.retries + 1):
            ok, detail = check(url=url, timeout=args.timeout)
            print(f"GET {url}: {detail}", file=sys.stderr)
            if ok:
                break
            if attempt == args.retries:
                return 1
            time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
