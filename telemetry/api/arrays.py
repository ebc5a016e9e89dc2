"""PostgreSQL arrays read in its binary format (what array_send writes) straight into numpy."""
import struct

import numpy as np


def array_received(data: bytes, dtype: str) -> np.ndarray:
    """An array in PostgreSQL's binary format (array_send) without nulls, as numpy of its shape.

    The format: dimensions, a has-nulls flag and the element type, a (size, lower bound) per
    dimension, then each element as its length and its big-endian bytes.
    """
    dimensions, has_nulls, _ = struct.unpack_from(">iii", data)
    if has_nulls:
        raise ValueError("array_received reads arrays without nulls")
    if dimensions == 0:
        return np.empty(0, dtype=np.dtype(dtype).newbyteorder("="))
    shape = struct.unpack_from(f">{2 * dimensions}i", data, 12)[0::2]
    elements = np.frombuffer(data, dtype=np.dtype([("length", ">i4"), ("value", dtype)]), offset=12 + 8 * dimensions)
    return elements["value"].reshape(shape)


# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01 UTC.
_POSTGRES_EPOCH_US = 946_684_800_000_000


def timestamps_received(data: bytes) -> np.ndarray:
    """An array of timestamptz in PostgreSQL's binary format, as int64 microseconds since the Unix epoch."""
    return _POSTGRES_EPOCH_US + array_received(data, ">i8").astype(np.int64)
