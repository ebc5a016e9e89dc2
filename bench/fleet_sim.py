"""`make fleet-sim`: a simulated live fleet against the real collector, and the largest fleet it keeps up with.

    python -m bench.fleet_sim                                 # the search at 1 s, then at 15 s ticks
    python -m bench.fleet_sim --quick                         # a smoke run, under a minute
    python -m bench.fleet_sim --nodes 40 --interval 1         # one fleet size over one 60 s window

A simulated node is what a GPU node runs: dcgm-exporter (8 GPUs × 25 DCGM fields, pods on some GPUs,
on every fourth node one GPU split into two MIG instances) and a streamer that sends one batch per
tick, stamped with the tick's wall-clock time. Nodes are not synchronised: their phases are spread
evenly over the interval. Batches go through the product's BatchPublisher to RabbitMQ, where a real
collector (`celery -A config worker`, 2 processes, settings from the environment) stores them.

A step runs N nodes for a warm-up (and until the first tick's device registrations have drained, which
a running fleet no longer pays), then a measurement window in which it reads the ingest queue's
depth every second. The fleet is kept up with when the depth stays flat: its least-squares slope is
under 2% of the publish rate and the last depth under one tick's batches; a queue holding three
ticks' batches ends the step early, not kept up with. Freshness is the time from a sample's
timestamp to `GET /api/v1/gpus/<id>/latest` (in process) first showing it, for a few probe devices
polled at 8 Hz in all (so it is an upper bound, to within a poll). A step in which the simulator
sent a batch a whole interval late is invalid. Each step reports the CPU of the pipeline's parts
and of everything else on the machine ("others"): a busy neighbour moves the result.

The search at 1 s doubles N from 50 over 20 s windows until a step is not kept up with (halves it if
the first is not), bisects once, and
measures the largest N kept up with over the full window. At 15 s it starts from 15× that (the same
batch rate) and takes one step up or down, each over the full window. Each step starts from empty
tables, an empty queue and a fresh worker.
"""
import argparse
import itertools
import json
import logging
import math
import os
import random
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bench import harness

if TYPE_CHECKING:  # the product's modules import Django models: imported at run time, once Django is set up
    from amqp import Channel
    from django.test import Client

    from telemetry.ingest.wire import Batch, GpuInfo, Labels

DATABASE = "telemetry_fleet_sim"
QUEUE = "telemetry.ingest.fleet_sim"
RESULTS = harness.REPO / "bench" / "results"

# The DCGM fields each device reports, with the range a tick's value is drawn from: the collector
# stores doubles whatever they mean, so plausible ranges are enough.
FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", 210.0, 1980.0),
    ("DCGM_FI_DEV_MEM_CLOCK", 1593.0, 2619.0),
    ("DCGM_FI_DEV_GPU_TEMP", 28.0, 85.0),
    ("DCGM_FI_DEV_MEMORY_TEMP", 30.0, 90.0),
    ("DCGM_FI_DEV_POWER_USAGE", 70.0, 700.0),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e9, 1e12),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, 10.0),
    ("DCGM_FI_DEV_GPU_UTIL", 0.0, 100.0),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", 0.0, 100.0),
    ("DCGM_FI_DEV_ENC_UTIL", 0.0, 100.0),
    ("DCGM_FI_DEV_DEC_UTIL", 0.0, 100.0),
    ("DCGM_FI_DEV_XID_ERRORS", 0.0, 0.0),
    ("DCGM_FI_DEV_FB_FREE", 0.0, 81559.0),
    ("DCGM_FI_DEV_FB_USED", 0.0, 81559.0),
    ("DCGM_FI_DEV_FB_RESERVED", 520.0, 520.0),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 0.0, 1e12),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 0.0, 0.0),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 0.0, 4.0),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 0.0, 0.0),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.0, 1.0),
    ("DCGM_FI_PROF_SM_ACTIVE", 0.0, 1.0),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.0, 1.0),
    ("DCGM_FI_PROF_DRAM_ACTIVE", 0.0, 1.0),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", 0.0, 3e10),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", 0.0, 3e10),
)
GPUS_PER_NODE = 8
MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "550.54.15"
POD_GPUS = 6  # GPUs 0-5 of a node run a training pod; the others are idle
MIG_NODE_EVERY = 4  # on every fourth node the last GPU is in MIG mode
MIG_INSTANCES = ((1, "3g.40gb"), (2, "3g.40gb"))

FLAT_SLOPE_SHARE = 0.02  # a depth slope under this share of the publish rate is flat
BEHIND_TICKS = 3  # a queue holding this many ticks' batches is not kept up with: the step ends
WINDOW_MIN_S = 5.0  # the least window measured before that ends a step, so its rates mean something
# Batches a second one publisher connection sends comfortably (confirms are pipelined).
BATCHES_PER_CONNECTION = 1000
CONNECTIONS_MAX = 8
POLL_HZ = 8  # API requests a second, all probes together, so polling costs little of 2 cores
# Probe devices few enough that the poll budget covers each probe tick this many times: otherwise
# freshness measures the wait for a poll.
POLLS_PER_PROBE_TICK = 4
PROBES_MAX = 16
GRACE_S = 5.0  # after the window, how long the probes may wait for the window's last ticks
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DRAIN_MAX_S = 10.0  # after the warm-up, how long the first ticks' backlog may take to drain


@dataclass(frozen=True)
class Plan:
    """One step: N nodes at one interval, a warm-up, then the measurement window."""

    nodes: int
    interval_s: float
    window_s: float
    warmup_s: float


@dataclass(frozen=True)
class SearchPlan:
    """How a search steps N at one interval; `confirm_window_s` re-measures the largest N kept up with."""

    interval_s: float
    first: int
    factor: float
    steps_max: int
    window_s: float
    warmup_s: float
    bisect: bool
    confirm_window_s: float | None


@dataclass
class Step:
    """What one step measured."""

    nodes: int
    interval_s: float
    window_s: float
    warmup_s: float
    first_tick_drained: bool  # False: the window began with the first tick's registrations still queued
    samples_per_tick: int
    target_batches_per_s: float
    publish_batches_per_s: float
    stored_samples_per_s: float
    depth_slope: float  # batches per second
    depth_max: int
    depth_final: int
    stopped_early: bool
    kept_up: bool
    simulator_late_max_s: float
    freshness_s: dict
    cpu_cores: dict
    dead_lettered: int
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The simulator kept its schedule and nothing went wrong."""
        return self.simulator_late_max_s < self.interval_s and not self.problems


# --- The simulated nodes ---


def hostname(node: int) -> str:
    return f"fleet-node-{node:05d}"


def gpu_uuid(node: int, gpu: int) -> str:
    return f"GPU-{node:08x}-{gpu:04x}-4a1e-8f3c-{node * GPUS_PER_NODE + gpu:012x}"


def device_label_pairs(node: int, gpu: int, mig: tuple[int, str] | None) -> list[tuple[str, str]]:
    """A device's labels as dcgm-exporter writes them on each of its lines."""
    pairs = [("gpu", str(gpu)), ("UUID", gpu_uuid(node, gpu)), ("pci_bus_id", f"00000000:{0x18 + gpu * 0x10:02X}:00.0"),
             ("device", f"nvidia{gpu}"), ("modelName", MODEL), ("Hostname", hostname(node)),
             ("DCGM_FI_DRIVER_VERSION", DRIVER)]
    if mig is not None:
        instance, profile = mig
        pairs += [("GPU_I_PROFILE", profile), ("GPU_I_ID", str(instance))]
        pairs += [("container", "server"), ("namespace", "inference"), ("pod", f"infer-{node}-{instance}")]
    elif gpu < POD_GPUS:
        pairs += [("container", "main"), ("namespace", f"team-{node % 7}"), ("pod", f"trainer-{node}-{gpu // 2}")]
    return pairs


def node_devices(node: int) -> list[tuple["GpuInfo", "Labels"]]:
    """The node's devices and their labels, made from the label pairs as the exporter source makes them."""
    from telemetry.ingest.streamer.exporter import device_and_labels

    devices = []
    for gpu in range(GPUS_PER_NODE):
        in_mig = node % MIG_NODE_EVERY == 0 and gpu == GPUS_PER_NODE - 1
        for mig in MIG_INSTANCES if in_mig else (None,):
            devices.append(device_and_labels(device_label_pairs(node, gpu, mig)))
    return devices


@dataclass
class SimNode:
    """One node's batch: its tables are built once, each tick fills only its times and values."""

    batch: "Batch"
    ranges: list[tuple[float, float]]  # (low, span) of each sample, in batch order
    phase_s: float
    probe: "Probe | None" = None

    def tick(self, ts_us: int, draw: Callable[[], float]) -> bytes:
        from telemetry.ingest.wire import encode_batch

        self.batch.ts = [ts_us] * len(self.batch.gpu)
        self.batch.value = [low + span * draw() for low, span in self.ranges]
        return encode_batch(self.batch)

    @property
    def samples(self) -> int:
        return len(self.ranges)


def sim_node(node: int, *, nodes: int, interval_s: float) -> SimNode:
    from telemetry.ingest.wire import Batch

    devices = node_devices(node)
    count = len(devices)
    batch = Batch(gpus=[gpu for gpu, _ in devices], metrics=[name for name, _, _ in FIELDS],
                  labels=[labels for _, labels in devices], gpu=list(range(count)), ts=[], label=list(range(count)),
                  size=[len(FIELDS)] * count, metric=list(range(len(FIELDS))) * count, value=[])
    ranges = [(low, high - low) for _ in devices for _, low, high in FIELDS]
    return SimNode(batch, ranges, phase_s=node * interval_s / nodes)


# --- Freshness: probe devices polled through the API ---


class Probe:
    """A probe device: the sample times its node sent, until the API first shows them."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._sent: deque[int] = deque()
        self._lock = threading.Lock()

    def sent(self, ts_us: int) -> None:
        with self._lock:
            self._sent.append(ts_us)

    def outstanding(self) -> bool:
        return bool(self._sent)

    def shown(self, newest_us: int, at_us: int) -> list[tuple[int, int]]:
        """(sample time, freshness), in µs, of each sent time the API now shows."""
        fresh = []
        with self._lock:
            while self._sent and self._sent[0] <= newest_us:
                ts_us = self._sent.popleft()
                fresh.append((ts_us, at_us - ts_us))
        return fresh

    def unseen(self) -> list[int]:
        with self._lock:
            return list(self._sent)


def probes_attach(nodes: list[SimNode], *, interval_s: float) -> list[Probe]:
    """Probe the last device (a MIG instance on MIG nodes) of nodes spread over the phases."""
    from telemetry.models import MIG_ID_SEPARATOR

    count = max(1, min(len(nodes), PROBES_MAX, int(POLL_HZ * interval_s / POLLS_PER_PROBE_TICK)))
    probes = []
    for node in sorted({i * len(nodes) // count for i in range(count)}):
        gpu = nodes[node].batch.gpus[-1]
        device_id = gpu.uuid if gpu.mig_instance is None else f"{gpu.uuid}{MIG_ID_SEPARATOR}{gpu.mig_instance}"
        nodes[node].probe = Probe(device_id)
        probes.append(nodes[node].probe)
    return probes


def microseconds(iso: str) -> int:
    """An API timestamp as µs since the epoch, exactly (a float would round)."""
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def newest_shown(client: "Client", device_id: str) -> int | None:
    """The newest sample time (µs) `GET …/latest` shows for the device; None while it has none."""
    response = client.get(f"/api/v1/gpus/{device_id}/latest")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise RuntimeError(f"{device_id}/latest answered {response.status_code}: {response.content[:200]!r}")
    times = [microseconds(row["timestamp"]) for row in response.json()["results"]]
    return max(times) if times else None


class ApiProber(threading.Thread):
    """Polls the probe devices that have a sample not yet shown, in turn, at POLL_HZ in all."""

    def __init__(self, probes: list[Probe], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.probes = probes
        self.stop = stop
        self.freshness: list[tuple[int, int]] = []
        self.polls = 0
        self.error: str | None = None

    def run(self) -> None:
        from django.db import connection
        from django.test import Client

        client = Client()
        # A probe device is polled as soon as its node sends, so a 404 (not stored yet) is expected, not logged.
        requests_log = logging.getLogger("django.request")
        requests_log.addFilter(self._other_threads)
        try:
            for turn in itertools.count():
                if self.stop.wait(1 / POLL_HZ):
                    return
                waiting = [probe for probe in self.probes if probe.outstanding()]
                if not waiting:
                    continue
                probe = waiting[turn % len(waiting)]
                newest = newest_shown(client, probe.device_id)
                self.polls += 1
                if newest is not None:
                    self.freshness += probe.shown(newest, time.time_ns() // 1000)
        except Exception as exc:  # reported as the step's problem
            self.error = f"API probe failed: {type(exc).__name__}: {exc}"
        finally:
            requests_log.removeFilter(self._other_threads)
            connection.close()

    def _other_threads(self, record: logging.LogRecord) -> bool:
        return record.thread != self.ident


# --- Publishing: nodes shared out over a few broker connections ---


class NodeShare(threading.Thread):
    """Some of the nodes on one BatchPublisher: each node sends its batch at its phase of every tick."""

    def __init__(self, nodes: list[SimNode], *, interval_s: float, start_at: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.interval_s = interval_s
        self.start_at = start_at
        self.stop = stop
        self.sends: list[tuple[float, float]] = []  # (monotonic time sent, seconds late)
        self.error: str | None = None

    def run(self) -> None:
        from config.celery import app
        from telemetry.ingest.streamer.publisher import BatchPublisher, PublishAborted

        # Never aborted: at the end of a step, close() waits for the broker to confirm the last batches.
        publisher = BatchPublisher(app=app, abort=threading.Event())
        draw = random.Random(id(self)).random
        try:
            for due, node in self._schedule():
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                late = time.monotonic() - due
                ts_us = time.time_ns() // 1000
                payload = node.tick(ts_us, draw)
                if node.probe is not None:
                    node.probe.sent(ts_us)
                publisher.publish(payload, samples=node.samples)
                self.sends.append((time.monotonic(), late))
        except PublishAborted:
            pass
        except Exception as exc:  # reported as the step's problem
            self.error = f"publishing failed: {type(exc).__name__}: {exc}"
        finally:
            publisher.close()

    def _schedule(self) -> Iterator[tuple[float, SimNode]]:
        for tick in itertools.count():
            for node in self.nodes:
                yield self.start_at + tick * self.interval_s + node.phase_s, node


def node_shares(nodes: list[SimNode], *, interval_s: float, start_at: float, stop: threading.Event) -> list[NodeShare]:
    """Nodes dealt out round robin, so each connection's nodes stay spread over the interval."""
    count = max(1, min(CONNECTIONS_MAX, math.ceil(len(nodes) / interval_s / BATCHES_PER_CONNECTION)))
    return [NodeShare(nodes[i::count], interval_s=interval_s, start_at=start_at, stop=stop) for i in range(count)]


# --- One step ---


def queue_depth(channel: "Channel", name: str) -> int:
    """Batches ready in the queue (not those the workers hold)."""
    return channel.queue_declare(queue=name, passive=True).message_count


def warmup_wait(channel: "Channel", queue: str, plan: Plan) -> bool:
    """`plan.warmup_s`, then until the queue holds under one tick's batches: a fleet's first tick registers
    every device, a cost a running fleet no longer pays. Waits at most the longer of DRAIN_MAX_S and a
    tick (no longer than the window); False if the backlog was still there."""
    time.sleep(plan.warmup_s)
    deadline = time.monotonic() + min(plan.window_s, max(DRAIN_MAX_S, plan.interval_s))
    while queue_depth(channel, queue) >= plan.nodes:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def depth_slope(depths: list[tuple[float, int]]) -> float:
    """Least-squares slope of the queue's depth, in batches per second."""
    if len(depths) < 2:
        return 0.0
    return statistics.linear_regression([t for t, _ in depths], [d for _, d in depths]).slope


def freshness_summary(freshness: list[float], unseen: int) -> dict:
    """p50, p99 and max in seconds; samples never shown count at their age when the step ended."""
    if not freshness:
        return {"p50": None, "p99": None, "max": None, "ticks": 0, "unseen": unseen}
    ordered = sorted(freshness)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)

    return {"p50": rank(0.5), "p99": rank(0.99), "max": round(ordered[-1], 3), "ticks": len(ordered), "unseen": unseen}


def cores_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Each process group's CPU over `seconds`, in cores (the machine has os.cpu_count() of them)."""
    return {name: round((after[name] - before.get(name, 0.0)) / seconds, 3) for name in after}


def machine_busy_seconds() -> float:
    """CPU seconds this machine's cores have run anything since boot (/proc/stat), whoever ran it."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def shown_wait(probes: list[Probe], seconds: float) -> None:
    """Give the probes up to `seconds` to see the samples still outstanding."""
    deadline = time.monotonic() + seconds
    while any(probe.outstanding() for probe in probes) and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass
class Window:
    """What the measurement window saw."""

    began: float  # monotonic
    ended: float
    began_us: int  # wall clock, as sample times are
    ended_us: int
    depths: list[tuple[float, int]]  # (seconds into the window, batches ready)
    stopped_early: bool
    stored_samples: int
    cores: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.ended - self.began

    def flat(self, plan: Plan) -> bool:
        """Kept up with: no early stop, a slope under FLAT_SLOPE_SHARE of the batch rate, under a tick left."""
        return not self.stopped_early and self.depths[-1][1] < plan.nodes \
            and depth_slope(self.depths) < FLAT_SLOPE_SHARE * plan.nodes / plan.interval_s


def window_observe(plan: Plan, channel: "Channel", queue: str, collector: set[int]) -> Window:
    """The queue's depth every second, the samples stored and the CPU used, over `plan.window_s`."""
    from telemetry.models import IngestCounter

    groups = {"collector": collector}
    began, began_us = time.monotonic(), time.time_ns() // 1000
    stored_before, cpu_before = harness.counter(IngestCounter.SAMPLES_STORED), harness.cpu_seconds(groups)
    own_before, busy_before = time.process_time(), machine_busy_seconds()
    depths: list[tuple[float, int]] = []
    stopped_early = False
    while time.monotonic() < began + plan.window_s:
        depths.append((time.monotonic() - began, queue_depth(channel, queue)))
        if depths[-1][1] >= BEHIND_TICKS * plan.nodes and depths[-1][0] >= WINDOW_MIN_S:
            stopped_early = True
            break
        time.sleep(max(0.0, 1 - (time.monotonic() - began) % 1))
    ended, ended_us = time.monotonic(), time.time_ns() // 1000
    seconds = ended - began
    cores = {"simulator_and_probes": round((time.process_time() - own_before) / seconds, 3),
             **cores_used(cpu_before, harness.cpu_seconds(groups), seconds)}
    # Processes outside the pipeline (another test run on a shared machine) skew the step.
    cores["others"] = round(max(0.0, (machine_busy_seconds() - busy_before) / seconds - sum(cores.values())), 3)
    return Window(began, ended, began_us, ended_us, depths, stopped_early,
                  harness.counter(IngestCounter.SAMPLES_STORED) - stored_before, cores)


def fleet_step(plan: Plan, run_dir: Path) -> Step:
    """Run `plan.nodes` nodes against a fresh worker and report whether the collector kept up."""
    from config.celery import app
    from django.conf import settings
    from telemetry.models import IngestCounter

    nodes = [sim_node(i, nodes=plan.nodes, interval_s=plan.interval_s) for i in range(plan.nodes)]
    probes = probes_attach(nodes, interval_s=plan.interval_s)
    harness.tables_truncate()
    harness.queues_purge()
    harness.database_settle()
    with harness.Worker(run_dir, max_per_gpu=settings.COLLECTOR_MAX_ENTRIES_PER_GPU) as worker, \
            app.connection_for_write() as broker:
        channel = broker.default_channel
        stop, probe_stop = threading.Event(), threading.Event()
        shares = node_shares(nodes, interval_s=plan.interval_s, start_at=time.monotonic() + 0.5, stop=stop)
        prober = ApiProber(probes, probe_stop)
        for thread in (*shares, prober):
            thread.start()
        try:
            time.sleep(0.5)
            warmup_began = time.monotonic()
            drained = warmup_wait(channel, settings.INGEST_QUEUE, plan)
            warmup_s = time.monotonic() - warmup_began
            window = window_observe(plan, channel, settings.INGEST_QUEUE, worker.pids())
            stop.set()
            if window.flat(plan):
                shown_wait(probes, GRACE_S)
        finally:
            stop.set()
            probe_stop.set()
            for thread in (*shares, prober):
                thread.join()
        dead = harness.counter(IngestCounter.BATCHES_DEAD_LETTERED)
    sends = [(at, late) for share in shares for at, late in share.sends if window.began <= at <= window.ended]
    problems = [error for error in (prober.error, *(share.error for share in shares)) if error]
    if dead:
        problems.append(f"{dead} batches dead-lettered; see {worker.log}")
    return Step(
        nodes=plan.nodes, interval_s=plan.interval_s, window_s=round(window.seconds, 1), warmup_s=round(warmup_s, 1),
        first_tick_drained=drained,
        samples_per_tick=sum(node.samples for node in nodes), target_batches_per_s=plan.nodes / plan.interval_s,
        publish_batches_per_s=len(sends) / window.seconds, stored_samples_per_s=window.stored_samples / window.seconds,
        depth_slope=depth_slope(window.depths), depth_max=max(d for _, d in window.depths),
        depth_final=window.depths[-1][1], stopped_early=window.stopped_early, kept_up=window.flat(plan),
        simulator_late_max_s=round(max((late for _, late in sends), default=0.0), 3),
        freshness_s=probed_freshness(prober, probes, window), cpu_cores=window.cores, dead_lettered=dead,
        problems=problems,
    )


def probed_freshness(prober: ApiProber, probes: list[Probe], window: Window) -> dict:
    """Freshness of the probe samples stamped in the window; those never shown count at their age now."""
    fresh = [age / 1e6 for ts, age in prober.freshness if window.began_us <= ts <= window.ended_us]
    now_us = time.time_ns() // 1000
    unseen = [(now_us - ts) / 1e6 for probe in probes for ts in probe.unseen()
              if window.began_us <= ts <= window.ended_us]
    return {**freshness_summary(fresh + unseen, len(unseen)), "api_polls": prober.polls}


# --- The search ---


WINDOW_S = 60.0
FAST = SearchPlan(interval_s=1, first=50, factor=2, steps_max=8, window_s=20, warmup_s=5, bisect=True,
                  confirm_window_s=WINDOW_S)
SLOW_INTERVAL_S = 15
SLOW = SearchPlan(interval_s=SLOW_INTERVAL_S, first=0, factor=1.5, steps_max=2, window_s=WINDOW_S,
                  warmup_s=SLOW_INTERVAL_S, bisect=False, confirm_window_s=None)
QUICK_FAST = SearchPlan(interval_s=1, first=20, factor=2, steps_max=2, window_s=4, warmup_s=1, bisect=False,
                        confirm_window_s=None)
QUICK_SLOW = replace(SLOW, steps_max=1, window_s=5)


def step_run(plan: Plan, run_dir: Path, steps: list[Step]) -> Step:
    step = fleet_step(plan, run_dir)
    steps.append(step)
    print("  " + step_line(step), flush=True)
    return step


def largest_fleet(search: SearchPlan, run_dir: Path, steps: list[Step]) -> Step | None:
    """The largest N kept up with at `search.interval_s`, measured over the full window; None if none was."""
    kept: list[Step] = []
    missed: int | None = None
    nodes = search.first

    def plan(n: int, window_s: float) -> Plan:
        return Plan(n, search.interval_s, window_s, search.warmup_s)

    for _ in range(search.steps_max):
        step = step_run(plan(nodes, search.window_s), run_dir, steps)
        if not step.valid:
            print(f"  the simulator could not keep its schedule at {nodes} nodes; the search stops", flush=True)
            break
        if step.kept_up:
            kept.append(step)
            if missed is not None:
                break
            nodes = round(nodes * search.factor)
        else:
            missed = nodes
            if kept:
                break
            nodes = round(nodes / search.factor)
            if nodes < 1:
                break
    kept.sort(key=lambda s: s.nodes)
    if search.bisect and kept and missed is not None:
        middle = (kept[-1].nodes + missed) // 2
        if kept[-1].nodes < middle < missed:
            step = step_run(plan(middle, search.window_s), run_dir, steps)
            if step.kept_up and step.valid:
                kept.append(step)
    if search.confirm_window_s is None:
        return kept[-1] if kept else None
    candidates = sorted({s.nodes for s in kept}, reverse=True)[:2]
    if len(candidates) == 1 and candidates[0] > 1:
        candidates.append(max(1, round(candidates[0] / search.factor)))
    for candidate in candidates:
        step = step_run(plan(candidate, search.confirm_window_s), run_dir, steps)
        if step.kept_up and step.valid:
            return step
    return None


def search_summary(result: Step | None, steps: list[Step], interval_s: float) -> dict:
    """The search's answer: the largest N kept up with, and the smallest larger N that was not (None: none tried)."""
    missed = [step.nodes for step in steps if step.interval_s == interval_s and step.valid and not step.kept_up
              and (result is None or step.nodes > result.nodes)]
    return {"nodes": result.nodes if result else None,
            "freshness_p99_s": result.freshness_s["p99"] if result else None,
            "not_kept_up_at": min(missed, default=None), "step": asdict(result) if result else None}


def measure_fleet(run_dir: Path, *, quick: bool, window_s: float = WINDOW_S) -> dict:
    """The largest fleet kept up with at 1 s and at 15 s ticks, over `window_s` (not with `quick`).

    Django must be set up on a migrated database (bench.harness.configure_django)."""
    fast, slow = (QUICK_FAST, QUICK_SLOW) if quick else \
        (replace(FAST, confirm_window_s=window_s), replace(SLOW, window_s=window_s))
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    steps: list[Step] = []
    print(f"fleet at {fast.interval_s:g} s ticks", flush=True)
    fast_result = largest_fleet(fast, run_dir, steps)
    # Without a confirmed result, the largest N any short window kept up with.
    kept_fast = fast_result.nodes if fast_result else max((s.nodes for s in steps if s.kept_up), default=1)
    first_slow = SLOW_INTERVAL_S * kept_fast
    print(f"fleet at {slow.interval_s:g} s ticks", flush=True)
    slow_result = largest_fleet(replace(slow, first=first_slow), run_dir, steps)
    return {
        "largest": {f"{search.interval_s:g}s": search_summary(result, steps, search.interval_s)
                    for search, result in ((fast, fast_result), (slow, slow_result))},
        "steps": [asdict(step) for step in steps],
        "seconds": round(time.perf_counter() - began, 1),
        "problems": [problem for step in steps for problem in step.problems],
    }


# --- Report ---

COLUMNS = ("interval", "N", "window", "kept up?", "slope b/s", "max depth", "publish b/s", "stored samples/s",
           "fresh p50", "fresh p99", "sim CPU", "others' CPU")


def step_cells(step: Step) -> tuple[str, ...]:
    fresh = step.freshness_s
    if step.problems:
        kept = "INVALID (a problem)"
    elif not step.valid:
        kept = f"INVALID (sim {step.simulator_late_max_s:.1f} s late)"
    else:
        why = []
        if step.stopped_early:
            why.append(f"{BEHIND_TICKS} ticks behind")
        if not step.first_tick_drained:
            why.append("first tick not drained")
        kept = "yes" if step.kept_up else "NO" + (f" ({', '.join(why)})" if why else "")
    return (f"{step.interval_s:g} s", str(step.nodes), f"{step.window_s:g} s", kept, f"{step.depth_slope:+.2f}",
            str(step.depth_max), f"{step.publish_batches_per_s:,.1f}", f"{step.stored_samples_per_s:,.0f}",
            "—" if fresh["p50"] is None else f"{fresh['p50']:.2f} s",
            "—" if fresh["p99"] is None else f"{fresh['p99']:.2f} s", f"{step.cpu_cores['simulator_and_probes']:.2f}",
            f"{step.cpu_cores['others']:.2f}")


def step_line(step: Step) -> str:
    line = ", ".join(f"{name} {cell}" for name, cell in zip(COLUMNS, step_cells(step)))
    return line + "".join(f"; {problem}" for problem in step.problems)


def table(steps: list[dict]) -> str:
    rows = [COLUMNS] + [step_cells(Step(**step)) for step in steps]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def summary_line(largest: dict) -> str:
    missed = largest["not_kept_up_at"]
    limit = "no larger N tried" if missed is None else f"{missed} not kept up with"
    if largest["nodes"] is None:
        return f"none ({limit})"
    return f"{largest['nodes']} nodes ({limit}), freshness p99 {largest['freshness_p99_s']} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, help="one fleet size instead of the search")
    parser.add_argument("--interval", type=float, help="seconds between a node's batches, with --nodes (default 1)")
    parser.add_argument("--window", type=float, default=WINDOW_S,
                        help="seconds measured: the one step, or the search's final steps (default %(default)g)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short windows, few steps")
    parser.add_argument("--report", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.interval is not None and not args.nodes:
        parser.error("--interval goes with --nodes; the search runs at 1 s and 15 s")
    run_dir = RESULTS / "work-fleet-sim"
    run_dir.mkdir(parents=True, exist_ok=True)
    harness.database_recreate(DATABASE)
    harness.configure_django(DATABASE, QUEUE)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    try:
        if args.nodes:
            interval = args.interval or FAST.interval_s
            plan = Plan(args.nodes, interval, args.window, warmup_s=max(interval, FAST.warmup_s))
            step = step_run(plan, run_dir, [])
            report = {"steps": [asdict(step)], "problems": step.problems}
        else:
            report = measure_fleet(run_dir, quick=args.quick, window_s=args.window)
    finally:
        connection.close()
        harness.queues_delete()
        harness.database_drop(DATABASE)
    report["seconds"] = round(time.perf_counter() - began, 1)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"fleet-sim-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    if args.report:
        args.report.write_text(out.read_text())
    print()
    print(table(report["steps"]))
    for interval, largest in report.get("largest", {}).items():
        print(f"largest fleet kept up with at {interval}: {summary_line(largest)}")
    print(f"results: {out.relative_to(harness.REPO)}  ({report['seconds']} s)")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
