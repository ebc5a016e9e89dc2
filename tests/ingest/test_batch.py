"""The batch format: what the streamer encodes is what the collector decodes; garbage is refused."""
import msgpack
import pytest

from telemetry.ingest.batch import BatchBuilder, BatchDecodeError, GpuInfo, Labels, Sample, decode_batch, encode_batch

GPU = GpuInfo("GPU-1", "host-a", 0, "nvidia0", "NVIDIA H100 80GB HBM3")
LABELS = Labels("", "", "", (("job", "dcgm"),))


def test_round_trip_keeps_every_sample():
    builder = BatchBuilder()
    samples = [
        Sample(GPU, "DCGM_FI_DEV_GPU_UTIL", 1_752_871_354_000_000, 87.5, LABELS),
        Sample(GPU._replace(uuid="GPU-2", index=1), "DCGM_FI_DEV_GPU_TEMP", 1_752_871_355_000_001, 41.0, None),
    ]
    for sample in samples:
        builder.add(sample)
    decoded = decode_batch(encode_batch(builder.build()))
    assert decoded.samples() == samples


def test_tables_are_interned():
    builder = BatchBuilder()
    for t in range(100):
        builder.add(Sample(GPU, "DCGM_FI_DEV_GPU_UTIL", t, 1.0, LABELS))
    batch = builder.build()
    assert (len(batch.gpus), len(batch.metrics), len(batch.labels)) == (1, 1, 1)
    # Columnar encoding: a sample costs a few bytes, not a dict of names.
    assert len(encode_batch(batch)) < 100 * 20


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\xc1not msgpack", "not a msgpack batch"),
        (msgpack.packb([1, 2, 3]), "not a map"),
        (msgpack.packb({"v": 99}), "unsupported batch format version 99"),
        (msgpack.packb({"v": 1, "gpus": []}), "malformed batch tables"),
        (
            msgpack.packb({"v": 1, "gpus": [], "metrics": ["m"], "labels": [], "gpu": [0], "metric": [0],
                           "label": [-1], "ts": [1], "value": [1.0]}),
            "GPU index is out of range",
        ),
        (
            msgpack.packb({"v": 1, "gpus": [["u", "h", 0, "d", "m"]], "metrics": ["m"], "labels": [], "gpu": [0, 0],
                           "metric": [0], "label": [-1], "ts": [1], "value": [1.0]}),
            "not lists of one length",
        ),
        (
            msgpack.packb({"v": 2, "gpus": [["u", "h", 0, "d", "m"]], "metrics": ["m"], "labels": [], "gpu": [0],
                           "ts": [1], "label": [-1], "size": [2], "metric": [0], "value": [1.0]}),
            "reading sizes do not add up",
        ),
        (
            msgpack.packb({"v": 1, "gpus": [["u", "h", 0, "d", "m"]], "metrics": ["m"], "labels": [], "gpu": ["x"],
                           "metric": [0], "label": [-1], "ts": [1], "value": [1.0]}),
            "malformed batch columns",
        ),
    ],
)
def test_undecodable_batches_are_refused_with_a_reason(payload, message):
    with pytest.raises(BatchDecodeError, match=message):
        decode_batch(payload)


def _one_reading(**columns) -> bytes:
    batch = {"v": 2, "gpus": [["u", "h", 0, "d", "m"]], "metrics": ["m", "n"], "labels": [], "gpu": [0], "ts": [1],
             "label": [-1], "size": [2], "metric": [0, 1], "value": [1.0, 2]}
    return msgpack.packb({**batch, **columns})


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"value": [1.0, float("nan")]}, "a value is not finite"),
        ({"value": [float("-inf"), 1.0]}, "a value is not finite"),
        ({"value": [1.0, "2"]}, "a value is not a number"),
        ({"value": [True, 1.0]}, "a value is not a number"),
        ({"ts": [1.5]}, "a timestamp is not an integer"),
        ({"size": [0], "metric": [], "value": []}, "reading sizes do not add up"),
        ({"size": [True, 1]}, "not lists of one length"),
    ],
)
def test_bad_columns_are_refused_by_name(columns, message):
    with pytest.raises(BatchDecodeError, match=message):
        decode_batch(_one_reading(**columns))
    assert len(decode_batch(_one_reading())) == 2


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
    created = builder.readings_created
    builder.add(Sample(GPU, "a", 5, 1.0, None))
    first = builder.take(3)
    assert first.ts == [0, 1] and len(builder) == 7  # whole readings: 4 samples taken, not 3
    assert builder.take(created_before=created).ts == [2, 3, 4]
    assert builder.build().ts == [5] and len(builder) == 0


def test_version_1_batches_are_still_read():
    payload = msgpack.packb({"v": 1, "gpus": [list(GPU)], "metrics": ["m"], "labels": [], "gpu": [0, 0],
                             "metric": [0, 0], "label": [-1, -1], "ts": [1, 2], "value": [1.0, 2.0]})
    batch = decode_batch(payload)
    assert [(s.timestamp_us, s.value) for s in batch.samples()] == [(1, 1.0), (2, 2.0)]
