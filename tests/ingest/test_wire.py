"""The batch format: what the streamer encodes is what the collector decodes; garbage is refused."""
import msgpack
import pytest

from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.wire import BatchDecodeError, GpuInfo, Labels, Sample, decode_batch, encode_batch

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


def test_version_1_batches_are_still_read():
    payload = msgpack.packb({"v": 1, "gpus": [list(GPU)], "metrics": ["m"], "labels": [], "gpu": [0, 0],
                             "metric": [0, 0], "label": [-1, -1], "ts": [1, 2], "value": [1.0, 2.0]})
    batch = decode_batch(payload)
    assert [(s.timestamp_us, s.value) for s in batch.samples()] == [(1, 1.0), (2, 2.0)]


def test_version_2_batches_are_read_as_whole_gpus():
    payload = msgpack.packb({"v": 2, "gpus": [list(GPU)[:5]], "metrics": ["m"], "labels": [], "gpu": [0],
                             "ts": [1], "label": [-1], "size": [1], "metric": [0], "value": [1.0]})
    assert decode_batch(payload).gpus == [GPU] and GPU.mig_instance is None


def test_mig_instances_of_one_gpu_are_devices_of_their_own():
    instances = [GPU._replace(mig_instance=i, mig_profile="1g.10gb") for i in (1, 2)]
    builder = BatchBuilder()
    for device in (GPU, *instances):
        for metric in ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_FB_USED"):
            builder.add(Sample(device, metric, 1, 0.5, None))
    decoded = decode_batch(encode_batch(builder.build()))
    assert decoded.gpus == [GPU, *instances]
    assert (decoded.gpu, decoded.size) == ([0, 1, 2], [2, 2, 2])
