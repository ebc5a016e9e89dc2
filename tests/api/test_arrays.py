"""Arrays read as PostgreSQL sends them in its binary format."""
import numpy as np
import pytest
from django.db import connection

from telemetry.api.arrays import array_received

pytestmark = pytest.mark.django_db


def sent(expression: str) -> bytes:
    """What PostgreSQL's array_send writes for an SQL array expression."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT array_send({expression})")
        return bytes(cursor.fetchone()[0])


@pytest.mark.parametrize("expression, dtype, expected", [
    ("ARRAY[1.5, -2, 'NaN', 1e300]::float8[]", ">f8", [1.5, -2.0, np.nan, 1e300]),
    ("ARRAY[[1, 2, 3], [4, 5, 6]]::integer[]", ">i4", [[1, 2, 3], [4, 5, 6]]),
    ("'{}'::float8[]", ">f8", []),
])
def test_arrays_read_as_postgresql_sends_them(expression, dtype, expected):
    np.testing.assert_array_equal(array_received(sent(expression), dtype), np.array(expected))


def test_an_array_with_nulls_is_refused_by_name():
    with pytest.raises(ValueError, match="without nulls"):
        array_received(sent("ARRAY[1, NULL]::float8[]"), ">f8")
