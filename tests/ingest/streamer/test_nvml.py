"""The NVML source, with a fake `pynvml` module standing in for the NVIDIA driver (the only fake)."""
import logging
import sys
import threading
import types
from collections import namedtuple

import pytest

from telemetry.ingest.streamer.nvml import NvmlUnavailable, read_nvml
from telemetry.ingest.wire import GpuInfo

Utilization = namedtuple("Utilization", "gpu memory")
Memory = namedtuple("Memory", "total used free")
Attributes = namedtuple("Attributes", "gpuInstanceSliceCount computeInstanceSliceCount memorySizeMB")
# A MIG device in a slot of its GPU: its GPU instance id, the profile its name ends with (None: a
# name without one), its framebuffer (GiB) and its slices (for nvmlDeviceGetAttributes).
MigSlot = namedtuple("MigSlot", "gi profile total_gib used_gib slices", defaults=(1,))
# A MIG device's handle; valid while its slot still holds the same GPU instance.
MigHandle = namedtuple("MigHandle", "parent slot gi")


class FakeNvmlError(Exception):
    pass


class FakeNotSupported(FakeNvmlError):
    def __init__(self):
        super().__init__("Not Supported")


class FakeNotFound(FakeNvmlError):
    def __init__(self):
        super().__init__("Not Found")


class FakeInvalidArgument(FakeNvmlError):
    def __init__(self):
        super().__init__("Invalid Argument")


def fake_pynvml(*, gpus: int, init_error: bool = False, power_unsupported_on: int = -1,
                memory_v2: bool = True, mig: dict | None = None, mig_off: tuple = ()) -> types.ModuleType:
    """`gpus` GPUs, handles 0, 1, …. A GPU in `mig` has MIG mode on, with `mig[i]` its seven slots
    (MigSlot, or None for an empty one); one in `mig_off` can do MIG but has it off; the others are
    older GPUs, without MIG (nvmlDeviceGetMigMode not supported). Change `nvml.mig` to change the layout."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNvmlError
    nvml.NVMLError_NotSupported = FakeNotSupported
    nvml.NVMLError_NotFound = FakeNotFound
    nvml.NVMLError_InvalidArgument = FakeInvalidArgument
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.NVML_CLOCK_SM = 1
    nvml.NVML_CLOCK_MEM = 2
    nvml.NVML_DEVICE_MIG_ENABLE = 1
    nvml.nvmlMemory_v2 = 33554472
    nvml.shutdown_calls = 0
    nvml.mig = dict(mig or {})
    nvml.device_level_on_mig = []  # device-level queries made on a MIG device's handle

    def init():
        if init_error:
            raise FakeNvmlError("Driver Not Loaded")

    def shutdown():
        nvml.shutdown_calls += 1

    def mig_slot(handle: MigHandle) -> MigSlot:
        slots = nvml.mig.get(handle.parent) or []
        slot = slots[handle.slot] if handle.slot < len(slots) else None
        if slot is None or slot.gi != handle.gi:  # its instance destroyed
            raise FakeInvalidArgument()
        return slot

    def whole_gpu_only(read):
        """NVML's device-level queries: not supported on a MIG device's handle."""
        def on(handle, *args):
            if isinstance(handle, MigHandle):
                nvml.device_level_on_mig.append(read.__name__)
                mig_slot(handle)
                raise FakeNotSupported()
            return read(handle, *args)
        return on

    def temperature(handle, sensor):
        return 60 + handle

    def clock_info(handle, clock):
        return {1: 1980, 2: 2619}[clock]

    def power(handle):
        if handle == power_unsupported_on:
            raise FakeNvmlError("Not Supported")
        return 250_500 + handle  # milliwatts

    def utilization(handle):
        if isinstance(handle, MigHandle) or handle in nvml.mig:  # none per MIG device, nor of a GPU in MIG mode
            if isinstance(handle, MigHandle):
                mig_slot(handle)
            raise FakeNotSupported()
        return Utilization(90 + handle, 40)

    def name(handle):
        if isinstance(handle, MigHandle):
            profile = mig_slot(handle).profile
            return b"NVIDIA H100 80GB HBM3" + (b" MIG " + profile.encode() if profile else b"")
        return b"NVIDIA H100 80GB HBM3"

    def mig_mode(handle):
        if handle in nvml.mig:
            return [1, 1]
        if handle in mig_off:
            return [0, 0]
        raise FakeNotSupported()  # a GPU older than MIG

    def max_mig_devices(handle):
        if handle not in nvml.mig and handle not in mig_off:
            raise FakeNotSupported()
        return 7

    def mig_handle(handle, slot):
        if handle not in nvml.mig:
            raise FakeInvalidArgument()
        slots = nvml.mig[handle]
        if slot >= len(slots) or slots[slot] is None:
            raise FakeNotFound()
        return MigHandle(handle, slot, slots[slot].gi)

    def attributes(handle):
        if not isinstance(handle, MigHandle):
            raise FakeInvalidArgument()
        slot = mig_slot(handle)
        return Attributes(slot.slices, slot.slices, int(slot.total_gib * 1024))

    nvml.nvmlInit = init
    nvml.nvmlShutdown = shutdown
    nvml.nvmlDeviceGetCount = lambda: gpus
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: f"MIG-fake-{h.parent}-{h.gi}" if isinstance(h, MigHandle) else f"GPU-fake-{h}"
    nvml.nvmlDeviceGetName = name
    nvml.nvmlDeviceGetUtilizationRates = utilization
    nvml.nvmlDeviceGetTemperature = whole_gpu_only(temperature)
    nvml.nvmlDeviceGetPowerUsage = whole_gpu_only(power)
    nvml.nvmlDeviceGetClockInfo = whole_gpu_only(clock_info)
    nvml.nvmlDeviceGetMigMode = whole_gpu_only(mig_mode)
    nvml.nvmlDeviceGetMaxMigDeviceCount = whole_gpu_only(max_mig_devices)
    nvml.nvmlDeviceGetMigDeviceHandleByIndex = whole_gpu_only(mig_handle)
    nvml.nvmlDeviceGetGpuInstanceId = lambda h: mig_slot(h).gi if isinstance(h, MigHandle) else _raise(FakeInvalidArgument())
    nvml.nvmlDeviceGetAttributes = attributes

    def memory(handle, version=None):
        if isinstance(handle, MigHandle):
            slot = mig_slot(handle)
            total = int(slot.total_gib * 2**30)
            used = int(slot.used_gib * 2**30)
            return Memory(total, used, total - used)
        # Version 1 counts the driver's reserved memory as used; version 2 does not.
        if version is None:
            return Memory(80 * 2**30, 2**30 + 480 * 2**20, 79 * 2**30 - 480 * 2**20)
        if not memory_v2:
            raise FakeNvmlError("Function Not Found")
        return Memory(80 * 2**30, 2**30, 79 * 2**30 - 480 * 2**20)

    nvml.nvmlDeviceGetMemoryInfo = memory
    return nvml


def _raise(exc):
    raise exc


def one_tick(monkeypatch, nvml) -> list:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    stop = threading.Event()
    samples = []
    for sample in read_nvml(interval=0.01, stop=stop, hostname="node-1"):
        samples.append(sample)
        if len(samples) == 8 * nvml.nvmlDeviceGetCount():
            stop.set()
    return samples


def test_every_gpu_gives_every_metric_named_as_dcgm_names_them(monkeypatch):
    nvml = fake_pynvml(gpus=2)
    samples = one_tick(monkeypatch, nvml)
    by_key = {(s.gpu.uuid, s.metric): s for s in samples}
    assert len(by_key) == 16
    gpu1 = by_key[("GPU-fake-1", "DCGM_FI_DEV_GPU_UTIL")]
    assert (gpu1.gpu.hostname, gpu1.gpu.index, gpu1.gpu.device, gpu1.gpu.model_name) == ("node-1", 1, "nvidia1", "NVIDIA H100 80GB HBM3")
    assert {metric: by_key[("GPU-fake-1", metric)].value for metric in (
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    )} == {
        "DCGM_FI_DEV_GPU_UTIL": 91.0, "DCGM_FI_DEV_MEM_COPY_UTIL": 40.0, "DCGM_FI_DEV_GPU_TEMP": 61.0,
        "DCGM_FI_DEV_POWER_USAGE": 250.501, "DCGM_FI_DEV_SM_CLOCK": 1980.0, "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
        "DCGM_FI_DEV_FB_USED": 1024.0, "DCGM_FI_DEV_FB_FREE": 79 * 1024.0 - 480,
    }
    # A tick's samples share one time.
    assert len({s.timestamp_us for s in samples}) == 1
    assert nvml.shutdown_calls == 1


def test_a_driver_without_memory_info_version_2_counts_reserved_memory_as_used(monkeypatch):
    samples = one_tick(monkeypatch, fake_pynvml(gpus=1, memory_v2=False))
    values = {s.metric: s.value for s in samples}
    assert (values["DCGM_FI_DEV_FB_USED"], values["DCGM_FI_DEV_FB_FREE"]) == (1024.0 + 480, 79 * 1024.0 - 480)


def test_an_unsupported_metric_is_skipped_alone(monkeypatch, caplog):
    nvml = fake_pynvml(gpus=2, power_unsupported_on=0)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    stop = threading.Event()
    samples = []
    for sample in read_nvml(interval=0.01, stop=stop, hostname="node-1"):
        samples.append(sample)
        if len(samples) == 15:
            stop.set()
    assert ("GPU-fake-0", "DCGM_FI_DEV_POWER_USAGE") not in {(s.gpu.uuid, s.metric) for s in samples}
    assert "DCGM_FI_DEV_POWER_USAGE on GPU GPU-fake-0 unavailable" in caplog.text


def test_no_driver_raises_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=0, init_error=True))
    with pytest.raises(NvmlUnavailable, match="^NVML: cannot initialise the NVIDIA driver: Driver Not Loaded$"):
        next(read_nvml(interval=1, stop=threading.Event()))


# One GPU in MIG mode: a 3g.40gb GPU instance (id 2) and a 1g.10gb one (id 13) in slots 0 and 2 of
# its seven, the others empty; as on an A100 or H100, where GPU instance ids are per profile.
A_3G = MigSlot(2, "3g.40gb", 39.25, 4.5, 3)
A_1G = MigSlot(13, "1g.10gb", 9.5, 0.25, 1)
TWO_INSTANCES = {0: [A_3G, None, A_1G, None, None, None, None]}
WHOLE_GPU_METRICS = {
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
}
GPU0 = GpuInfo("GPU-fake-0", "node-1", 0, "nvidia0", "NVIDIA H100 80GB HBM3")
GPU1 = GpuInfo("GPU-fake-1", "node-1", 1, "nvidia1", "NVIDIA H100 80GB HBM3")


def run_ticks(monkeypatch, nvml, count: int, *, between=None, **options) -> list[list]:
    """The samples of the first `count` ticks, tick by tick. `between(n)` runs as tick n + 1 begins
    (as its first sample arrives, so the rest of that tick sees what it changes)."""
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    stop = threading.Event()
    ticks: list[list] = []
    for sample in read_nvml(interval=0.01, stop=stop, hostname="node-1", **options):
        if not ticks or ticks[-1][0].timestamp_us != sample.timestamp_us:
            if len(ticks) == count:
                stop.set()
                continue
            if ticks and between is not None:
                between(len(ticks))
            ticks.append([])
        if not stop.is_set():
            ticks[-1].append(sample)
    return ticks


def by_device(samples) -> dict:
    """Device → {metric: value}."""
    devices: dict = {}
    for s in samples:
        devices.setdefault(s.gpu, {})[s.metric] = s.value
    return devices


def test_a_gpu_in_mig_mode_gives_its_mig_instances_and_the_whole_gpu_is_unchanged(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="telemetry.ingest.streamer.nvml")
    nvml = fake_pynvml(gpus=2, mig=TWO_INSTANCES, mig_off=(1,))
    ticks = run_ticks(monkeypatch, nvml, 3)
    assert len(ticks) == 3
    devices = by_device(ticks[0])
    instance_2 = GPU0._replace(mig_instance=2, mig_profile="3g.40gb")
    instance_13 = GPU0._replace(mig_instance=13, mig_profile="1g.10gb")
    # The parent GPU's UUID, index, device and model name, told apart by the GPU instance id.
    assert list(devices) == [GPU0, instance_2, instance_13, GPU1]
    assert {gpu.key for gpu in devices} == {("GPU-fake-0", None), ("GPU-fake-0", 2), ("GPU-fake-0", 13), ("GPU-fake-1", None)}
    # Per instance, its framebuffer (MiB): NVML has no utilisation per MIG instance, and the
    # device-level metrics are the parent's.
    assert devices[instance_2] == {"DCGM_FI_DEV_FB_USED": 4.5 * 1024, "DCGM_FI_DEV_FB_FREE": (39.25 - 4.5) * 1024}
    assert devices[instance_13] == {"DCGM_FI_DEV_FB_USED": 256.0, "DCGM_FI_DEV_FB_FREE": 9.25 * 1024}
    assert nvml.device_level_on_mig == []  # not even asked of an instance
    # The parent: a whole GPU, without utilisation (not supported in MIG mode).
    assert devices[GPU0] == {
        "DCGM_FI_DEV_GPU_TEMP": 60.0, "DCGM_FI_DEV_POWER_USAGE": 250.5, "DCGM_FI_DEV_SM_CLOCK": 1980.0,
        "DCGM_FI_DEV_MEM_CLOCK": 2619.0, "DCGM_FI_DEV_FB_USED": 1024.0, "DCGM_FI_DEV_FB_FREE": 79 * 1024.0 - 480,
    }
    # A GPU that can do MIG but has it off reads as before.
    assert devices[GPU1] == {
        "DCGM_FI_DEV_GPU_UTIL": 91.0, "DCGM_FI_DEV_MEM_COPY_UTIL": 40.0, "DCGM_FI_DEV_GPU_TEMP": 61.0,
        "DCGM_FI_DEV_POWER_USAGE": 250.501, "DCGM_FI_DEV_SM_CLOCK": 1980.0, "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
        "DCGM_FI_DEV_FB_USED": 1024.0, "DCGM_FI_DEV_FB_FREE": 79 * 1024.0 - 480,
    }
    # Every tick the same devices and metrics; a tick's samples share one time.
    for tick in ticks:
        assert by_device(tick) == devices
        assert len({s.timestamp_us for s in tick}) == 1
    # Each unsupported metric logged once: at info on an instance (expected), a warning on a GPU.
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages.count((logging.INFO, "NVML: DCGM_FI_DEV_GPU_UTIL on GPU GPU-fake-0 MIG instance 13 (1g.10gb) "
                                         "unavailable: Not Supported")) == 1
    assert messages.count((logging.WARNING, "NVML: DCGM_FI_DEV_GPU_UTIL on GPU GPU-fake-0 unavailable: Not Supported")) == 1
    assert (logging.INFO, "NVML: 2 GPU(s), 2 MIG instance(s): GPU-fake-0/2 3g.40gb, GPU-fake-0/13 1g.10gb on node-1") in messages
    assert nvml.shutdown_calls == 1


def test_mig_profiles_compute_instances_and_names_without_a_profile(monkeypatch):
    nvml = fake_pynvml(gpus=1, mig={0: [
        # A 7g.80gb GPU instance split into two compute instances: two MIG devices, one GPU instance.
        # (Its 79 GiB would make "7g.79gb" from the attributes: the name is what gives NVIDIA's.)
        MigSlot(0, "1c.7g.80gb", 79, 1, 7), MigSlot(0, "2c.7g.80gb", 79, 1, 7),
        # A name without a profile: built from the attributes (slices, GiB rounded up).
        MigSlot(5, None, 19.5, 1, 2),
        MigSlot(9, "1g.10gb+me", 9.5, 1, 1), None, None, None,
    ]})
    devices = by_device(run_ticks(monkeypatch, nvml, 1)[0])
    assert [(gpu.mig_instance, gpu.mig_profile) for gpu in devices] == [
        (None, ""), (0, "7g.80gb"), (5, "2g.20gb"), (9, "1g.10gb+me"),
    ]


def test_a_destroyed_mig_instance_is_dropped_at_the_next_poll(monkeypatch, caplog):
    nvml = fake_pynvml(gpus=2, mig={0: list(TWO_INSTANCES[0])})
    new = MigSlot(5, "2g.20gb", 19.5, 2, 2)

    def reconfigure(done):
        if done == 1:  # destroy instance 13, make instance 5
            nvml.mig[0] = [A_3G, new, None, None, None, None, None]

    ticks = run_ticks(monkeypatch, nvml, 4, between=reconfigure, mig_check_seconds=3600)
    assert [(g.mig_instance, g.mig_profile) for g in by_device(ticks[0]) if g.uuid == "GPU-fake-0"] == [
        (None, ""), (2, "3g.40gb"), (13, "1g.10gb")]
    # Tick 2 read instance 13 after it was destroyed: no samples, and the layout is read again.
    assert [g.mig_instance for g in by_device(ticks[1]) if g.uuid == "GPU-fake-0"] == [None, 2]
    assert "on GPU GPU-fake-0 MIG instance 13 (1g.10gb) unavailable: Invalid Argument" in caplog.text
    for tick in ticks[2:]:
        devices = by_device(tick)
        assert [(g.mig_instance, g.mig_profile) for g in devices if g.uuid == "GPU-fake-0"] == [
            (None, ""), (2, "3g.40gb"), (5, "2g.20gb")]
        assert devices[GPU0._replace(mig_instance=5, mig_profile="2g.20gb")] == {
            "DCGM_FI_DEV_FB_USED": 2048.0, "DCGM_FI_DEV_FB_FREE": 17.5 * 1024}
        assert set(devices[GPU1]) == WHOLE_GPU_METRICS


def test_a_new_mig_instance_is_found_by_the_periodic_check(monkeypatch):
    nvml = fake_pynvml(gpus=1, mig={0: list(TWO_INSTANCES[0])})

    def create(done):
        if done == 1:
            nvml.mig[0] = [A_3G, MigSlot(5, "2g.20gb", 19.5, 2, 2), A_1G, None, None, None, None]

    # Polls 0.01 s apart, the layout checked every 3 polls: at the start of tick 4.
    ticks = run_ticks(monkeypatch, nvml, 4, between=create, mig_check_seconds=0.03)
    assert [[g.mig_instance for g in by_device(tick)] for tick in ticks] == [
        [None, 2, 13], [None, 2, 13], [None, 2, 13], [None, 2, 5, 13]]


def test_mig_mode_turned_off_makes_the_gpu_whole_again(monkeypatch):
    nvml = fake_pynvml(gpus=1, mig={0: list(TWO_INSTANCES[0])})

    def mig_off(done):
        if done == 1:
            nvml.mig.clear()

    ticks = run_ticks(monkeypatch, nvml, 3, between=mig_off, mig_check_seconds=3600)
    assert [g.mig_instance for g in by_device(ticks[0])] == [None, 2, 13]
    assert by_device(ticks[2]) == {GPU0: by_device(ticks[2])[GPU0]}
    assert set(by_device(ticks[2])[GPU0]) == WHOLE_GPU_METRICS
