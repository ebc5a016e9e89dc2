"""Typed readers for environment variables, so every setting fails fast with a clear message."""
import os
import re
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def _env_number(name: str, default, cast, noun: str, minimum):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {noun}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `90s`, `2w` → timedelta."""
    match = _AGE.match(text.strip())
    if not match:
        raise ValueError(f"age {text!r} is not a number followed by s, m, h, d or w (for example 7d)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def env_age(name: str, default: str, *, allow_never: bool = False) -> int:
    """An age such as 7d or 2h, in seconds; with `allow_never`, 0 means no limit (returned as 0)."""
    raw = os.environ.get(name, "").strip() or default
    if allow_never and raw == "0":
        return 0
    try:
        seconds = int(parse_age(raw).total_seconds())
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}{' or 0 for no limit' if allow_never else ''}") from None
    if seconds <= 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must be longer than 0")
    return seconds
