"""The NVML source on a real NVIDIA GPU: its samples next to nvidia-smi's, and through a batch.

Needs only the driver, nvidia-ml-py and msgpack (no database or broker): `python3 scripts/nvml_check.py`.
Prints JSON; every metric of the last full tick should match the nvidia-smi column of the same name.
"""
import json
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from telemetry.ingest.streamer.batching import HeldReadings  # noqa: E402
from telemetry.ingest.wire import decode_batch, encode_batch  # noqa: E402
from telemetry.ingest.streamer.nvml import read_nvml  # noqa: E402

stop = threading.Event()
samples, ticks = [], []
for sample in read_nvml(interval=0.5, stop=stop):
    samples.append(sample)
    if not ticks or ticks[-1] != sample.timestamp_us:
        ticks.append(sample.timestamp_us)
    if len(ticks) >= 4:
        stop.set()
query = "uuid,name,utilization.gpu,utilization.memory,temperature.gpu,power.draw,clocks.sm,clocks.mem,memory.used,memory.free"
smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                     capture_output=True, text=True).stdout.strip()
held = HeldReadings(1000, 100, None)
batches = [*held.feed(iter(samples)), *held.drain()]
round_trip = all(decode_batch(encode_batch(b)).samples() == b.samples() for b in batches)
last = ticks[-2]
print(json.dumps({
    "samples": len(samples),
    "ticks": len(ticks),
    "tick_gaps_ms": [round((b - a) / 1000) for a, b in zip(ticks, ticks[1:])],
    "gpus": sorted({tuple(s.gpu) for s in samples}),
    "last_full_tick": {s.metric: s.value for s in samples if s.timestamp_us == last},
    "nvidia_smi": dict(zip(query.split(","), smi.split(", "))),
    "reading_sizes": sorted({n for b in batches for n in b.size}),
    "batch_round_trip_equal": round_trip,
}, indent=1))
