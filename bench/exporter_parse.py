"""How fast the streamer parses dcgm-exporter's /metrics pages into samples, on one core.

    python -m bench.exporter_parse                    # 200 nodes' pages, each parsed 5 times, best of 3
    python -m bench.exporter_parse --nodes 20 --runs 1 --no-reference    # quick (bench.run --smoke)

A page is in dcgm-exporter's shape: 8 GPUs × 25 fields (gauges and counters, each family with its
HELP and TYPE lines), 10 labels a sample (gpu, UUID, pci_bus_id, device, modelName, Hostname,
DCGM_FI_DRIVER_VERSION, container, namespace, pod), the last GPU in MIG mode as two GPU instances
(GPU_I_ID, GPU_I_PROFILE). Each node's page is parsed by that node's own parser, as the streamer
does, once cold (the first scrape: every label text parsed) and then `--scrapes` times warm (every
later scrape). The figure is the warm rate in samples per second of this process's CPU time; each
run also checks the sample count and value sum against what the pages hold.

For scale, on the same pages: prometheus_client's parser and a plain parser with one regex per
line and a dict of labels per sample (the two options the issue measured), unless --no-reference.
"""
import argparse
import re
import sys
import time
from math import fsum

TARGET = 300_000  # samples/s on one core

FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes."),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status"),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles the device memory interface is active sending or receiving data."),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "counter", "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second."),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "counter", "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second."),
    ("DCGM_EXP_XID_ERRORS_COUNT", "gauge", "Count of XID Errors within user-specified time window (see xid-count-window-size param)."),
)
GPUS = 8
MIG_INSTANCES = (("1", "3g.40gb"), ("2", "3g.40gb"))  # the last GPU's


def node_page(node: int, tick: int = 0) -> tuple[str, int, float]:
    """(page text, samples, value sum) of one node's /metrics in dcgm-exporter's shape."""
    host = f"gpu-node-{node:04d}"
    devices = []
    for gpu in range(GPUS):
        uuid = f"GPU-{node:04x}{gpu:04x}-7a3c-4e5f-9b1d-{node * GPUS + gpu:012x}"
        common = (f'gpu="{gpu}",UUID="{uuid}",pci_bus_id="00000000:{0x18 + gpu * 0x10:02X}:00.0",device="nvidia{gpu}",'
                  f'modelName="NVIDIA H100 80GB HBM3"')
        pod = f'container="main",namespace="team-{node % 7}",pod="trainer-{node}-{gpu // 2}"'
        if gpu < GPUS - 1:
            devices.append(f'{common},Hostname="{host}",DCGM_FI_DRIVER_VERSION="550.54.15",{pod}')
        else:
            for instance, profile in MIG_INSTANCES:
                devices.append(f'{common},GPU_I_PROFILE="{profile}",GPU_I_ID="{instance}",Hostname="{host}",'
                               f'DCGM_FI_DRIVER_VERSION="550.54.15",{pod}')
    lines = []
    values = []
    for f, (name, kind, help_text) in enumerate(FIELDS):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for d, labels in enumerate(devices):
            value = float((node * 31 + f * 7 + d * 3 + tick) % 1000) + (0.5 if f % 3 == 0 else 0.0)
            text = f"{value:.6f}" if f % 3 == 0 else str(int(value))
            lines.append(f"{name}{{{labels}}} {text}")
            values.append(float(text))
    return "\n".join(lines) + "\n", len(values), fsum(values)


def parse_ours(pages: list[str], scrapes: int) -> tuple[float, float, int, float]:
    """(cold seconds, warm seconds per pass, samples per pass, value sum of a pass) with the streamer's parser."""
    from telemetry.ingest.streamer.exporter import DEFAULT_METRICS, ExpositionParser

    select = re.compile(DEFAULT_METRICS).fullmatch
    rejects: list = []
    on_reject = lambda *args: rejects.append(args)  # noqa: E731
    parsers = [ExpositionParser(f"node-{n}", select=select) for n in range(len(pages))]
    started = time.process_time()
    for parser, page in zip(parsers, pages):
        parser.parse(page, 1_700_000_000_000_000, on_reject)
    cold = time.process_time() - started
    count, total = 0, 0.0
    started = time.process_time()
    for _ in range(scrapes):
        count, values = 0, []
        for parser, page in zip(parsers, pages):
            samples = parser.parse(page, 1_700_000_000_000_000, on_reject)
            count += len(samples)
            values.append(fsum(sample.value for sample in samples))
        total = fsum(values)
    warm = (time.process_time() - started) / scrapes
    if rejects:
        raise SystemExit(f"{len(rejects)} lines rejected, first {rejects[0]}")
    return cold, warm, count, total


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_regex(pages: list[str]) -> tuple[float, int]:
    """(seconds, samples) of one pass of a plain parser: a regex per line, a dict of labels per sample."""
    started = time.process_time()
    count = 0
    for page in pages:
        for line in page.split("\n"):
            if not line or line.startswith("#"):
                continue
            match = _LINE.match(line)
            if match is None:
                continue
            labels = dict(_PAIR.findall(match.group(2) or ""))
            if labels.get("UUID"):
                float(match.group(3))
                count += 1
    return time.process_time() - started, count


def parse_prometheus_client(pages: list[str]) -> tuple[float, int]:
    from prometheus_client.parser import text_string_to_metric_families

    started = time.process_time()
    count = 0
    for page in pages:
        for family in text_string_to_metric_families(page):
            count += len(family.samples)
    return time.process_time() - started, count


def measure(nodes: int, scrapes: int, runs: int, reference: bool) -> dict:
    pages, expected, expected_sum = [], 0, []
    for node in range(nodes):
        page, count, total = node_page(node)
        pages.append(page)
        expected += count
        expected_sum.append(total)
    value_sum = fsum(expected_sum)
    best_warm = best_cold = float("inf")
    for _ in range(runs):
        cold, warm, count, total = parse_ours(pages, scrapes)
        if count != expected or abs(total - value_sum) > 1e-6 * max(1.0, abs(value_sum)):
            raise SystemExit(f"parsed {count} samples summing to {total}; the pages hold {expected} summing to {value_sum}")
        best_warm, best_cold = min(best_warm, warm), min(best_cold, cold)
    result = {
        "samples_per_s": expected / best_warm, "cold_samples_per_s": expected / best_cold, "samples": expected,
        "nodes": nodes, "page_bytes": len(pages[0]), "samples_per_page": expected // nodes,
    }
    if reference:
        seconds, count = min(parse_regex(pages) for _ in range(runs))
        result["regex_per_line_samples_per_s"] = count / seconds
        some = pages[: max(1, nodes // 10)]  # it is slow: a tenth of the pages
        seconds, count = min(parse_prometheus_client(some) for _ in range(runs))
        result["prometheus_client_samples_per_s"] = count / seconds
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=5, help="warm passes over every page per run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs; the best one counts")
    parser.add_argument("--no-reference", action="store_true", help="skip prometheus_client and the regex parser")
    args = parser.parse_args(argv)
    import django
    from django.conf import settings

    if not settings.configured:  # telemetry.models holds the column widths the parser checks
        settings.configure(INSTALLED_APPS=["telemetry"])
        django.setup()
    result = measure(args.nodes, args.scrapes, args.runs, not args.no_reference)
    met = "met" if result["samples_per_s"] >= TARGET else "NOT met"
    print(f"exporter parser: {result['samples_per_s']:>10,.0f} samples/s warm, {result['cold_samples_per_s']:,.0f} "
          f"cold ({result['nodes']} pages of {result['samples_per_page']} samples, {result['page_bytes']:,} bytes; "
          f"target {TARGET:,}: {met})")
    if "regex_per_line_samples_per_s" in result:
        print(f"regex per line:  {result['regex_per_line_samples_per_s']:>10,.0f} samples/s (for scale)")
        print(f"prometheus_client: {result['prometheus_client_samples_per_s']:>8,.0f} samples/s (for scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
