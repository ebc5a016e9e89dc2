"""The NVML source, with a fake `pynvml` module standing in for the NVIDIA driver (the only fake)."""
import sys
import threading
import types
from collections import namedtuple

import pytest

from telemetry.ingest.streamer.nvml import NvmlUnavailable, read_nvml

Utilization = namedtuple("Utilization", "gpu memory")
Memory = namedtuple("Memory", "total used free")


class FakeNvmlError(Exception):
    pass


def fake_pynvml(*, gpus: int, init_error: bool = False, power_unsupported_on: int = -1,
                memory_v2: bool = True) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNvmlError
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.NVML_CLOCK_SM = 1
    nvml.NVML_CLOCK_MEM = 2
    nvml.nvmlMemory_v2 = 33554472
    nvml.shutdown_calls = 0

    def init():
        if init_error:
            raise FakeNvmlError("Driver Not Loaded")

    def shutdown():
        nvml.shutdown_calls += 1

    def power(handle):
        if handle == power_unsupported_on:
            raise FakeNvmlError("Not Supported")
        return 250_500 + handle  # milliwatts

    nvml.nvmlInit = init
    nvml.nvmlShutdown = shutdown
    nvml.nvmlDeviceGetCount = lambda: gpus
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-fake-{h}"
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: Utilization(90 + h, 40)
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 60 + h
    nvml.nvmlDeviceGetPowerUsage = power
    nvml.nvmlDeviceGetClockInfo = lambda h, clock: {1: 1980, 2: 2619}[clock]
    def memory(handle, version=None):
        # Version 1 counts the driver's reserved 480 MiB as used; version 2 does not (as on an H100).
        if version is None:
            return Memory(80 * 2**30, 2**30 + 480 * 2**20, 79 * 2**30 - 480 * 2**20)
        if not memory_v2:
            raise FakeNvmlError("Function Not Found")
        return Memory(80 * 2**30, 2**30, 79 * 2**30 - 480 * 2**20)

    nvml.nvmlDeviceGetMemoryInfo = memory
    return nvml


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
