"""Devices of one host for the collector's MIG tests: a GPU split into two MIG instances, a whole GPU."""
from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.wire import Batch, GpuInfo, Sample
from tests.ingest.factories import METRICS

FIRST_TICK_US = 1_752_871_354_000_000  # as fleet_batch's default start
MIG_UUID = "GPU-0a1b2c3d-1111-2222-3333-444455556666"
WHOLE_UUID = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
_MODEL = "NVIDIA A100-SXM4-80GB"

MIG_PARENT = GpuInfo(MIG_UUID, "dgx-mig-01", 0, "nvidia0", _MODEL)  # the GPU before MIG mode was enabled
MIG_1 = MIG_PARENT._replace(mig_instance=1, mig_profile="3g.40gb")
MIG_2 = MIG_PARENT._replace(mig_instance=2, mig_profile="3g.40gb")
WHOLE = GpuInfo(WHOLE_UUID, "dgx-mig-01", 1, "nvidia1", _MODEL)
DEVICES = (MIG_PARENT, MIG_1, MIG_2, WHOLE)


def device_value(device: GpuInfo, tick: int) -> float:
    """A value that tells the device and tick apart: 100 × (its place in DEVICES) + tick."""
    return float(100 * DEVICES.index(device) + tick)


def devices_batch(*, ticks: int, devices: tuple[GpuInfo, ...] = DEVICES, first_tick: int = 0) -> Batch:
    """Each of `devices` × len(METRICS) metrics × `ticks` one-second ticks from `first_tick`."""
    builder = BatchBuilder()
    for tick in range(first_tick, first_tick + ticks):
        for device in devices:
            for metric in METRICS:
                builder.add(Sample(device, metric, FIRST_TICK_US + tick * 1_000_000, device_value(device, tick), None))
    return builder.build()
