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
        return [(batch.ts, batch.size) for burst in held.ready() for batch in burst]

    add("a", 1)
    add("b", 1)
    assert check() == []  # nothing was held at the check before
    add("c", 1)  # the reading of t=1 is still filling, as a time step read metric by metric is
    add("a", 2)
    assert check() == []  # t=1 had a sample since the last check; t=2 came after it
    add("d", 1)
    # t=1 was held two checks ago: it goes whatever came since; t=2 is quiet since the last check.
    assert check() == [([1, 2], [4, 1])]


def test_full_batches_wait_beyond_the_window_to_leave_as_one_burst():
    gpus = [GpuInfo(f"GPU-{n}", "h", n, "", "") for n in range(50)]
    held = HeldReadings(batch_size=100, reorder_window=600, flush_interval=None, burst_samples=400)
    source = (Sample(gpu, f"m{metric}", t, 1.0, None) for t in range(3) for metric in range(10) for gpu in gpus)
    bursts = list(held.feed(source))
    # Each time 1,000 samples are held (a window of 600 and a burst of 400), full batches are
    # taken down to the window: four of 100 samples at once, not one every 100 samples.
    assert [[len(batch) for batch in burst] for burst in bursts] == [[100] * 4, [100] * 4]
    rest = list(held.drain())
    assert sum(map(len, rest)) == 700 and {size for b in [*bursts[0], *bursts[1], *rest] for size in b.size} == {10}


def test_without_a_burst_each_full_batch_leaves_alone():
    held = HeldReadings(batch_size=2, reorder_window=0, flush_interval=None)
    source = [Sample(GPU, "a", t, 1.0, None) for t in range(6)]
    assert [[batch.ts for batch in burst] for burst in held.feed(source)] == [[[0, 1]], [[2, 3]], [[4, 5]]]
