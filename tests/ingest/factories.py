"""Small builders of samples and batches for the ingest tests, and a stand-in for the streamer's publisher."""
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from telemetry.ingest.wire import Batch, GpuInfo, Sample

from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.streamer.sources import read_path

METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP")


def gpu(n: int) -> GpuInfo:
    return GpuInfo(f"GPU-{n:04d}", f"host-{n // 8}", n % 8, f"nvidia{n % 8}", "NVIDIA H100 80GB HBM3")


def fleet_batch(*, gpus: int, ticks: int, start_us: int = 1_752_871_354_000_000) -> Batch:
    """`gpus` GPUs × len(METRICS) metrics × `ticks` one-second ticks; value = tick number."""
    builder = BatchBuilder()
    for tick in range(ticks):
        for n in range(gpus):
            for metric in METRICS:
                builder.add(Sample(gpu(n), metric, start_us + tick * 1_000_000, float(tick), None))
    return builder.build()


def file_batch(path: Path) -> Batch:
    builder = BatchBuilder()
    for sample in read_path(path, on_reject=lambda *args: None):
        builder.add(sample)
    return builder.build()


class PublisherStandIn:
    """What the streamer needs of a publisher (stream.Publisher), for tests that record or drop
    what it sends: a subclass says what `publish` does; a burst changes nothing here."""

    def publish(self, payload: bytes, *, samples: int) -> None:
        raise NotImplementedError

    def burst(self) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        pass
