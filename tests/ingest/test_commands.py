"""`manage.py backfill` and `manage.py trim` against the real PostgreSQL."""
import io

import pytest
from django.core.management import CommandError, call_command

from telemetry.times import to_datetime
from config.env import parse_age
from telemetry.models import Gpu, IngestCounter
from tests.conftest import SAMPLE_COUNT, SAMPLE_CSV, SAMPLE_GPUS, SAMPLE_VALUE_SUM
from tests.ingest.collector.devices import DEVICES, devices_batch
from tests.ingest.factories import fleet_batch
from tests.samples import stored_count, stored_sum

# backfill writes from its own thread (its own connection), so these tests commit and flush.
pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_backfill_twice_stores_nothing_new(tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "a.csv").write_bytes(SAMPLE_CSV.read_bytes())
    out, err = run("backfill", str(folder), "--batch-size", "1000")
    assert "2470 rows read, 2470 stored, 0 duplicates, 0 rejected" in out
    assert "100.0%" in err
    out, _ = run("backfill", str(SAMPLE_CSV))
    assert "2470 rows read, 0 stored, 2470 duplicates, 0 rejected" in out
    assert stored_count() == SAMPLE_COUNT
    assert Gpu.objects.count() == SAMPLE_GPUS
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)


def test_backfill_reports_malformed_rows_with_their_line_numbers(tmp_path, caplog):
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    lines[5] = lines[5].rstrip("\n") + ',"extra"\n'  # line 6: a 13th column
    lines[10] = lines[10].replace(',"0",', ',"oops",', 1)  # line 11: a bad gpu_id
    lines[20] = lines[20].split(",")[0] + "\n"  # line 21: one column
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    out, _ = run("backfill", str(bad))
    assert "2467 stored, 0 duplicates, 3 rejected" in out
    rejected_lines = sorted(r.line for r in caplog.records if r.getMessage().startswith("rejected row"))
    assert rejected_lines == [6, 11, 21]
    assert IngestCounter.objects.get(name="rows_rejected").value == 3


def test_backfill_of_a_file_with_a_wrong_header_fails_clearly(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    with pytest.raises(CommandError, match="needs the columns timestamp, metric_name"):
        run("backfill", str(bad))
    with pytest.raises(CommandError, match="no such file or folder"):
        run("backfill", str(tmp_path / "missing.csv"))


def test_trim_keeps_the_newest_per_gpu_and_drops_old_samples():
    from telemetry.ingest.collector.services import samples_persist

    samples_persist(batch=fleet_batch(gpus=2, ticks=6, start_us=0), max_per_gpu=0)
    out, _ = run("trim", "--max-per-gpu", "8")
    assert "trimmed 8 samples beyond 8 per GPU" in out
    assert stored_count(timestamp__lt=to_datetime(2_000_000)) == 0
    out, _ = run("trim", "--older-than", "1d", "--max-per-gpu", "0")
    assert "deleted 16 samples" in out  # every sample is from 1970
    assert list(Gpu.objects.values_list("sample_count", flat=True)) == [0, 0]


def test_trim_counts_a_whole_gpu_and_each_mig_instance_of_it_apart():
    from telemetry.ingest.collector.services import samples_persist

    samples_persist(batch=devices_batch(ticks=5), max_per_gpu=0)  # 10 samples per device
    out, _ = run("trim", "--max-per-gpu", "6")
    assert f"trimmed {4 * len(DEVICES)} samples beyond 6 per GPU" in out
    assert sorted(Gpu.objects.values_list("mig_instance", "sample_count"), key=str) == [
        (1, 6), (2, 6), (None, 6), (None, 6)]
    assert stored_count() == 6 * len(DEVICES)


@pytest.mark.parametrize("text, seconds", [("7d", 604800), ("12h", 43200), ("30m", 1800), ("90s", 90), ("2w", 1209600)])
def test_parse_age(text, seconds):
    assert parse_age(text).total_seconds() == seconds


def test_trim_rejects_a_bad_age():
    with pytest.raises(CommandError, match="is not a number followed by"):
        run("trim", "--older-than", "soon")


@pytest.mark.parametrize("command", ["backfill", "stream"])
def test_a_negative_reorder_window_is_refused_by_name(command):
    with pytest.raises(CommandError, match="--reorder-window must not be negative"):
        call_command(command, str(SAMPLE_CSV), "--reorder-window", "-1")
