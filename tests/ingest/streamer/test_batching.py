"""Samples grouped into readings and handed out as batches, oldest first."""
from telemetry.ingest.streamer.batching import BatchBuilder, Due, HeldReadings
from telemetry.ingest.wire import GpuInfo, Labels, Sample, encode_batch

GPU = GpuInfo("GPU-1", "host-a", 0, "nvidia0", "NVIDIA H100 80GB HBM3")
LABELS = Labels("", "", "", (("job", "dcgm"),))


def test_tables_are_interned():
    builder = BatchBuilder()
    for t in range(100):
        builder.add(Sample(GPU, "DCGM_FI_DEV_GPU_UTIL", t, 1.0, LABELS))
    batch = builder.build()
    assert (len(batch.gpus), len(batch.metrics), len(batch.labels)) == (1, 1, 1)
    # Columnar encoding: a sample costs a few bytes, not a dict of names.
    assert len(encode_batch(batch)) < 100 * 20


def test_samples_of_one_gpu_and_time_form_one_reading():
    builder = BatchBuilder()
    for metric in ("a", "b", "c"):
        for t in (1, 2):
            builder.add(Sample(GPU, metric, t, float(t), None))
    batch = builder.build()
    assert (batch.ts, batch.size) == ([1, 2], [3, 3])
    assert [(t, [batch.metrics[m] for m in ms]) for _, t, _, ms, _ in batch.readings()] == [
        (1, ["a", "b", "c"]), (2, ["a", "b", "c"])
    ]


def test_take_hands_out_the_oldest_readings_and_keeps_the_rest():
    builder = BatchBuilder()
    for t in range(5):
        for metric in ("a", "b"):
            builder.add(Sample(GPU, metric, t, 1.0, None))
    due = Due(created_before=builder.readings_created, quiet_through=builder.samples_added, forced_before=0)
    builder.add(Sample(GPU, "a", 5, 1.0, None))
    first = builder.take(3)
    assert first.ts == [0, 1] and len(builder) == 7  # whole readings: 4 samples taken, not 3
    assert builder.take(due=due).ts == [2, 3, 4]
    assert builder.build().ts == [5] and len(builder) == 0


def test_a_flush_check_sends_a_held_reading_once_it_is_quiet_or_two_checks_old():
    held = HeldReadings(batch_size=1000, reorder_window=0, flush_interval=3600)

    def add(metric: str, t: int) -> None:
        assert list(held.feed([Sample(GPU, metric, t, 1.0, None)])) == []  # nothing due between checks

    def check() -> list[tuple[list[int], list[int]]]:
        held.next_check = 0
        return [(batch.ts, batch.size) for batch in held.ready()]

    add("a", 1)
    add("b", 1)
    assert check() == []  # nothing was held at the check before
    add("c", 1)  # the reading of t=1 is still filling, as a time step read metric by metric is
    add("a", 2)
    assert check() == []  # t=1 had a sample since the last check; t=2 came after it
    add("d", 1)
    # t=1 was held two checks ago: it goes whatever came since; t=2 is quiet since the last check.
    assert check() == [([1, 2], [4, 1])]
