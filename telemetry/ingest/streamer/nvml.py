"""Live GPUs through NVML: every tick, one sample per GPU per metric, named as DCGM names them."""
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from telemetry.ingest.wire import GpuInfo, Sample

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class NvmlUnavailable(RuntimeError):
    """No NVIDIA driver (or no NVML library) on this machine."""


def _load_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but be clear if it is missing
        raise NvmlUnavailable(f"NVML: the nvidia-ml-py package is not installed ({exc})") from None
    return pynvml


def _readings(nvml: Any, handle: Any) -> dict[str, Callable[[], float]]:
    """Metric name → how to read it; each is read separately so one unsupported metric skips alone."""
    return {
        "DCGM_FI_DEV_GPU_UTIL": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        "DCGM_FI_DEV_MEM_COPY_UTIL": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).memory,
        "DCGM_FI_DEV_GPU_TEMP": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        # NVML reports milliwatts; DCGM reports watts.
        "DCGM_FI_DEV_POWER_USAGE": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
        "DCGM_FI_DEV_SM_CLOCK": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        "DCGM_FI_DEV_MEM_CLOCK": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        # NVML reports bytes; DCGM's framebuffer fields are MiB.
        "DCGM_FI_DEV_FB_USED": lambda: _memory_info(nvml, handle).used / _MIB,
        "DCGM_FI_DEV_FB_FREE": lambda: _memory_info(nvml, handle).free / _MIB,
    }


def _memory_info(nvml: Any, handle: Any) -> Any:
    """Framebuffer memory as DCGM and nvidia-smi count it: version 2 leaves the driver's reserved
    memory out of `used` (on an idle H100, version 1 said 480 MiB used where nvidia-smi said 0).
    A library or driver without version 2 gives version 1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except nvml.NVMLError:
            pass
    return nvml.nvmlDeviceGetMemoryInfo(handle)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml(*, interval: float, stop: threading.Event, hostname: str | None = None) -> Iterator[Sample]:
    """Poll every GPU every `interval` seconds until `stop` is set; all samples of a tick share its time."""
    nvml = _load_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML: cannot initialise the NVIDIA driver: {exc}") from None
    host = hostname or socket.gethostname()
    unsupported: set[tuple[str, str]] = set()
    try:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = GpuInfo(
                _text(nvml.nvmlDeviceGetUUID(handle)), host, index, f"nvidia{index}", _text(nvml.nvmlDeviceGetName(handle))
            )
            devices.append((gpu, _readings(nvml, handle)))
        logger.info("NVML: %d GPU(s) on %s", len(devices), host)
        while not stop.is_set():
            tick_us = time.time_ns() // 1000
            for gpu, readings in devices:
                for metric, read in readings.items():
                    try:
                        value = float(read())
                    except nvml.NVMLError as exc:
                        if (gpu.uuid, metric) not in unsupported:
                            unsupported.add((gpu.uuid, metric))
                            logger.warning("NVML: %s on GPU %s unavailable: %s", metric, gpu.uuid, exc)
                        continue
                    yield Sample(gpu, metric, tick_us, value, None)
            stop.wait(interval)
    finally:
        nvml.nvmlShutdown()
