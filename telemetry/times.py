"""Time conversions shared by the collector, the API and the admin: epoch microseconds, aware datetimes, RFC 3339 text."""
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def to_datetime(timestamp_us: int) -> datetime:
    """An aware UTC datetime from integer microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=timestamp_us)


def to_microseconds(moment: datetime) -> int:
    """Integer microseconds since the Unix epoch of an aware datetime."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def to_utc(moment: datetime) -> datetime:
    """The same instant in UTC (OverflowError when a zone offset takes it past year 1 or 9999)."""
    return moment.astimezone(timezone.utc)


def to_rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC as DRF writes a DateTimeField: 20:42:34Z, 20:42:34.500000Z."""
    return to_utc(moment).isoformat().replace("+00:00", "Z")


def to_rfc3339_short(moment: datetime) -> str:
    """RFC 3339 in UTC with the fraction's trailing zeros (and a bare dot) dropped: 20:42:34Z, 20:42:34.5Z.

    The form the API writes a sample's time in.
    """
    return microseconds_rfc3339_short(to_microseconds(moment))


def microseconds_rfc3339_short(timestamp_us: int) -> str:
    """to_rfc3339_short of integer microseconds since the Unix epoch, without a datetime in between."""
    seconds, fraction = divmod(timestamp_us, 1_000_000)
    text = (_NAIVE_EPOCH + timedelta(seconds=seconds)).isoformat()
    if fraction:
        text += f".{fraction:06d}".rstrip("0")
    return text + "Z"


def from_rfc3339(text: str) -> datetime:
    """An aware datetime from RFC 3339 text as the API writes it (a trailing Z for UTC)."""
    return datetime.fromisoformat(text)
