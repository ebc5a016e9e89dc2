"""Live GPUs through NVML: every tick, one sample per device per metric, named as DCGM names them.

A device is a whole GPU or one MIG GPU instance of a GPU with MIG mode on, named as the DCGM CSV
reader and the dcgm-exporter source name it: the parent GPU's UUID, index, device and model name,
plus the GPU instance id (DCGM's GPU_I_ID) and its profile (GPU_I_PROFILE, e.g. 3g.40gb).
"""
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from telemetry.ingest.wire import GpuInfo, Sample
from telemetry.models import MIG_PROFILE_MAX

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024

# How often a poll re-reads the MIG layout of GPUs that can run MIG (seconds; at least every poll).
# A layout check is a handful of NVML calls per such GPU (mode, slot count, and per occupied slot
# its handle, GPU instance id and name), so it is cheap; MIG instances are made and destroyed by an
# administrator, rarely. A read on a MIG instance failing other than "not supported" (its handle
# gone with its instance) brings the check forward to the next poll.
MIG_CHECK_SECONDS = 30.0

# What NVML reads per MIG instance: its framebuffer. Utilisation is asked for too, though NVML
# today answers "not supported" on MIG handles (DCGM has no DCGM_FI_DEV_GPU_UTIL for an instance
# either, only profiling fields such as DCGM_FI_PROF_GR_ENGINE_ACTIVE). Temperature, power and
# clocks belong to the parent GPU, which reports them as a whole GPU: read per instance they would
# repeat (or, summed, multiply) the GPU's.
_INSTANCE_METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")

# The profile in a MIG device's name, "NVIDIA A100-SXM4-80GB MIG 3g.40gb" → 3g.40gb; a suffix such as
# +me stays (1g.10gb+me is its own profile); the compute instance part of a GPU instance split into
# compute instances ("MIG 1c.3g.40gb") goes, as the GPU instance's profile is 3g.40gb.
_MIG_NAME = re.compile(r"\bMIG\s+(?:\d+c\.)?(\d+g\.\d+gb\S*)")


class NvmlUnavailable(RuntimeError):
    """No NVIDIA driver (or no NVML library) on this machine."""


class _NeverRaised(Exception):
    """Stands in for an NVMLError_* class an old nvidia-ml-py lacks."""


def _load_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but be clear if it is missing
        raise NvmlUnavailable(f"NVML: the nvidia-ml-py package is not installed ({exc})") from None
    return pynvml


def _error(nvml: Any, name: str) -> type[Exception]:
    return getattr(nvml, name, None) or _NeverRaised


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


def _instance_readings(nvml: Any, mig_handle: Any) -> dict[str, Callable[[], float]]:
    readings = _readings(nvml, mig_handle)
    return {metric: readings[metric] for metric in _INSTANCE_METRICS}


def _memory_info(nvml: Any, handle: Any) -> Any:
    """Framebuffer memory as DCGM and nvidia-smi count it: version 2 leaves the driver's reserved
    memory out of `used`; version 1 counts it as used.
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


def _describe(gpu: GpuInfo) -> str:
    if gpu.mig_instance is None:
        return gpu.uuid
    return f"{gpu.uuid} MIG instance {gpu.mig_instance} ({gpu.mig_profile or 'profile unknown'})"


def _mig_profile(nvml: Any, mig_handle: Any) -> str:
    """The MIG device's profile, as DCGM's GPU_I_PROFILE and `nvidia-smi -L` write it.

    From the device's name, which carries NVIDIA's own profile name ("… MIG 3g.40gb"). Only if the
    name has none: built from the device's attributes as <slices>g.<GiB rounded up>gb, which can be
    a GB off NVIDIA's name (its names are not one formula of the memory: an A100 80GB's 3g.40gb
    has 39.25 GiB, its 7g.80gb 79 GiB) and drops a suffix such as +me. "" if neither is readable.
    """
    try:
        match = _MIG_NAME.search(_text(nvml.nvmlDeviceGetName(mig_handle)))
    except nvml.NVMLError:
        match = None
    if match is not None and len(match[1]) <= MIG_PROFILE_MAX:
        return match[1]
    try:
        attributes = nvml.nvmlDeviceGetAttributes(mig_handle)
        return f"{attributes.gpuInstanceSliceCount}g.{math.ceil(attributes.memorySizeMB / 1024)}gb"
    except nvml.NVMLError:
        return ""


class _Devices:
    """This machine's devices: every GPU as a whole GPU, and each MIG GPU instance of a GPU in MIG mode."""

    def __init__(self, nvml: Any, host: str):
        self.nvml = nvml
        self.gpus: list[tuple[GpuInfo, Any]] = []
        # GPUs whose MIG mode NVML can tell, by position in self.gpus; the others (older GPUs, where
        # nvmlDeviceGetMigMode is not supported) are whole GPUs and never asked again.
        self.mig_capable: set[int] = set()
        self._warned: set[tuple[str, str]] = set()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = GpuInfo(
                _text(nvml.nvmlDeviceGetUUID(handle)), host, index, f"nvidia{index}", _text(nvml.nvmlDeviceGetName(handle))
            )
            if self._mig_mode(gpu, handle) is not None:
                self.mig_capable.add(index)
            self.gpus.append((gpu, handle))

    def _warn_once(self, gpu: GpuInfo, what: str, exc: Exception) -> None:
        if (gpu.uuid, what) not in self._warned:
            self._warned.add((gpu.uuid, what))
            logger.warning("NVML: %s on GPU %s failed: %s", what, gpu.uuid, exc)

    def _mig_mode(self, gpu: GpuInfo, handle: Any) -> bool | None:
        """Whether MIG mode is on now; None if this GPU (or driver) has no MIG."""
        get_mode = getattr(self.nvml, "nvmlDeviceGetMigMode", None)
        if get_mode is None:
            return None
        try:
            current, _pending = get_mode(handle)
        except (_error(self.nvml, "NVMLError_NotSupported"), _error(self.nvml, "NVMLError_FunctionNotFound")):
            return None
        except self.nvml.NVMLError as exc:  # can do MIG, cannot tell now: a whole GPU until the next check
            self._warn_once(gpu, "nvmlDeviceGetMigMode", exc)
            return False
        return current == getattr(self.nvml, "NVML_DEVICE_MIG_ENABLE", 1)

    def _instances(self, parent: GpuInfo, handle: Any) -> list[tuple[GpuInfo, Any]]:
        """The MIG GPU instances of a GPU in MIG mode, in slot order, each with its first MIG device's
        handle: a GPU instance split into compute instances has one MIG device per compute instance,
        all of one GPU instance id and framebuffer, and is one device here as in DCGM's GPU_I_ID."""
        nvml = self.nvml
        try:
            slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
        except nvml.NVMLError as exc:
            self._warn_once(parent, "nvmlDeviceGetMaxMigDeviceCount", exc)
            return []
        not_found = _error(nvml, "NVMLError_NotFound")
        instances: dict[int, tuple[GpuInfo, Any]] = {}
        for slot in range(slots):
            try:
                mig_handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                instance = int(nvml.nvmlDeviceGetGpuInstanceId(mig_handle))
            except not_found:  # an empty slot
                continue
            except nvml.NVMLError as exc:
                self._warn_once(parent, f"MIG device {slot}", exc)
                continue
            if instance not in instances:
                gpu = parent._replace(mig_instance=instance, mig_profile=_mig_profile(nvml, mig_handle))
                instances[instance] = (gpu, mig_handle)
        return list(instances.values())

    def devices(self) -> list[tuple[GpuInfo, dict[str, Callable[[], float]]]]:
        """Every device with how to read its metrics: each GPU, followed by its MIG instances if in MIG mode."""
        devices = []
        for index, (gpu, handle) in enumerate(self.gpus):
            devices.append((gpu, _readings(self.nvml, handle)))
            if index in self.mig_capable and self._mig_mode(gpu, handle):
                devices.extend((instance, _instance_readings(self.nvml, mig_handle))
                               for instance, mig_handle in self._instances(gpu, handle))
        return devices


def _layout(devices: list[tuple[GpuInfo, Any]]) -> list[GpuInfo]:
    return [gpu for gpu, _ in devices]


def _summary(devices: list[tuple[GpuInfo, Any]]) -> str:
    instances = [gpu for gpu, _ in devices if gpu.mig_instance is not None]
    text = f"{len(devices) - len(instances)} GPU(s)"
    if instances:
        text += f", {len(instances)} MIG instance(s): " + ", ".join(
            f"{gpu.uuid}/{gpu.mig_instance} {gpu.mig_profile}" for gpu in instances)
    return text


def read_nvml(*, interval: float, stop: threading.Event, hostname: str | None = None,
              mig_check_seconds: float = MIG_CHECK_SECONDS) -> Iterator[Sample]:
    """Poll every device every `interval` seconds until `stop` is set; all samples of a tick share its time.

    MIG instances are enumerated at start, again every `mig_check_seconds` (at least every poll) on
    GPUs that can run MIG, and at the next poll after a read on an instance fails other than "not
    supported"; a changed layout is logged, and its devices are read from that poll on.
    """
    nvml = _load_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML: cannot initialise the NVIDIA driver: {exc}") from None
    host = hostname or socket.gethostname()
    not_supported = _error(nvml, "NVMLError_NotSupported")
    unsupported: set[tuple[tuple[str, int | None], str]] = set()
    try:
        source = _Devices(nvml, host)
        devices = source.devices()
        logger.info("NVML: %s on %s", _summary(devices), host)
        check_every = max(1, math.ceil(mig_check_seconds / interval)) if interval > 0 else 1
        polls = 0
        check_now = False
        while not stop.is_set():
            if source.mig_capable and (check_now or (polls and polls % check_every == 0)):
                check_now = False
                found = source.devices()
                if _layout(found) != _layout(devices):
                    logger.info("NVML: MIG layout changed on %s: %s", host, _summary(found))
                devices = found
            polls += 1
            tick_us = time.time_ns() // 1000
            for gpu, readings in devices:
                for metric, read in readings.items():
                    try:
                        value = float(read())
                    except nvml.NVMLError as exc:
                        key = (gpu.key, metric)
                        if key not in unsupported:
                            unsupported.add(key)
                            if gpu.mig_instance is None:
                                logger.warning("NVML: %s on GPU %s unavailable: %s", metric, _describe(gpu), exc)
                            elif isinstance(exc, not_supported):  # expected: NVML has no utilisation per MIG instance
                                logger.info("NVML: %s on GPU %s unavailable: %s", metric, _describe(gpu), exc)
                            else:  # its instance destroyed, maybe: look at the layout again
                                logger.warning("NVML: %s on GPU %s unavailable: %s", metric, _describe(gpu), exc)
                                check_now = True
                        continue
                    yield Sample(gpu, metric, tick_us, value, None)
            stop.wait(interval)
    finally:
        nvml.nvmlShutdown()
