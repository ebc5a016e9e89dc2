"""Time conversions shared by the collector and the API: epoch microseconds and aware datetimes."""
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_datetime(timestamp_us: int) -> datetime:
    """An aware UTC datetime from integer microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=timestamp_us)


def to_microseconds(moment: datetime) -> int:
    """Integer microseconds since the Unix epoch of an aware datetime."""
    return (moment - EPOCH) // timedelta(microseconds=1)
