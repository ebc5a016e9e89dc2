"""The NVML source on a real NVIDIA GPU: its samples next to nvidia-smi's, and through a batch.

Needs the driver and requirements.txt (Django for the column widths the wire format checks; no
database or broker): `python3 scripts/nvml_check.py`.
Prints JSON; every metric of the last full tick should match the nvidia-smi column of the same name.

With MIG mode on, it also lists the MIG instances the source found (parent UUID, GPU instance id,
profile, and their metrics in the last full tick) next to `nvidia-smi -L`'s MIG devices and
`nvidia-smi mig -lgi`'s GPU instances (GPU, GPU instance id, profile), which should hold the same
instances ("mig_instances_match"; null where `mig -lgi` could not be read, e.g. without root), and
nvidia-smi's "MIG devices" table, whose memory usage per instance FB_USED should match. A GPU
instance split into compute instances is one device here and several lines in `nvidia-smi -L`.
"""
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The wire format imports the models' column widths, so Django is set up with just the app: no
# settings, secrets or database needed.
import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured and "DJANGO_SETTINGS_MODULE" not in os.environ:
    settings.configure(INSTALLED_APPS=["telemetry"])
django.setup()
from telemetry.ingest.streamer.batching import HeldReadings  # noqa: E402
from telemetry.ingest.wire import decode_batch, encode_batch  # noqa: E402
from telemetry.ingest.streamer.nvml import read_nvml  # noqa: E402


def nvidia_smi(*args: str) -> tuple[int, list[str]]:
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True)
    except OSError as exc:
        return -1, [str(exc)]
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


def device_name(gpu) -> str:
    return gpu.uuid if gpu.mig_instance is None else f"{gpu.uuid} GI {gpu.mig_instance} {gpu.mig_profile}"


stop = threading.Event()
samples, ticks = [], []
for sample in read_nvml(interval=0.5, stop=stop):
    samples.append(sample)
    if not ticks or ticks[-1] != sample.timestamp_us:
        ticks.append(sample.timestamp_us)
    if len(ticks) >= 4:
        stop.set()
query = "uuid,name,utilization.gpu,utilization.memory,temperature.gpu,power.draw,clocks.sm,clocks.mem,memory.used,memory.free"
_, smi = nvidia_smi(f"--query-gpu={query}", "--format=csv,noheader,nounits")
held = HeldReadings(1000, 100, None)
batches = [*(batch for burst in held.feed(iter(samples)) for batch in burst), *held.drain()]
round_trip = all(decode_batch(encode_batch(b)).samples() == b.samples() for b in batches)
last = ticks[-2]
last_tick: dict[str, dict[str, float]] = {}
for s in samples:
    if s.timestamp_us == last:
        last_tick.setdefault(device_name(s.gpu), {})[s.metric] = s.value
devices = sorted({s.gpu for s in samples}, key=lambda g: (g.index, g.mig_instance is not None, g.mig_instance or 0))
mig = [g for g in devices if g.mig_instance is not None]

# `nvidia-smi -L`: "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-…)", then "  MIG 3g.40gb Device 0: (UUID: MIG-…)".
_, listed = nvidia_smi("-L")
smi_mig: list[dict] = []
parent = None
for line in listed:
    if m := re.match(r"GPU (\d+): .*\(UUID: (\S+)\)", line):
        parent = m[2]
    elif m := re.match(r"\s+MIG (\S+)\s+Device\s+(\d+):", line):
        smi_mig.append({"gpu": parent, "profile": m[1], "device": int(m[2])})
# `nvidia-smi mig -lgi`: "|   0  MIG 3g.40gb          9        2          0:4     |" (GPU, name, profile id, GI id, placement).
lgi_rc, lgi = nvidia_smi("mig", "-lgi")
smi_gi = sorted((int(m[1]), int(m[3]), m[2]) for line in lgi
                if (m := re.match(r"\|\s*(\d+)\s+MIG\s+(\S+)\s+\d+\s+(\d+)\s+\d+:\d+\s*\|", line)))
ours = sorted((g.index, g.mig_instance, g.mig_profile) for g in mig)
_, table = nvidia_smi()
mig_table = []
for line in table:
    if "MIG devices" in line or mig_table:
        if "Processes" in line:
            break
        mig_table.append(line)

print(json.dumps({
    "samples": len(samples),
    "ticks": len(ticks),
    "tick_gaps_ms": [round((b - a) / 1000) for a, b in zip(ticks, ticks[1:])],
    "gpus": [list(g) for g in devices],
    "last_full_tick": last_tick,
    "nvidia_smi": [dict(zip(query.split(","), line.split(", "))) for line in smi],
    "mig_instances": [{"gpu": g.uuid, "index": g.index, "gpu_instance": g.mig_instance, "profile": g.mig_profile,
                       "metrics": last_tick.get(device_name(g), {})} for g in mig],
    "nvidia_smi_L": listed,
    "nvidia_smi_L_mig_devices": smi_mig,
    "nvidia_smi_mig_lgi": smi_gi if lgi_rc == 0 else lgi,
    "mig_instances_match": ours == smi_gi if lgi_rc == 0 else None,
    "nvidia_smi_mig_devices_table": mig_table,
    "reading_sizes": sorted({n for b in batches for n in b.size}),
    "batch_round_trip_equal": round_trip,
}, indent=1))
