"""A synthetic fleet shaped like the bundled DCGM sample: N hosts × 8 GPUs × 10 metrics, repeated over time.

Writes the same samples two ways: as a DCGM exporter CSV (what the streamer and `backfill` read)
and as COPY text, a row per sample and a row per reading (the PostgreSQL baselines). Rows come in
the sample's order: per tick, per metric, per host, per GPU. Values are deterministic, so the count
and the sum of a file's values are known without reading it back.

    python -m bench.fleet --hosts 1000 --ticks 13 --csv fleet.csv --copy fleet.tsv
"""
import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

METRICS = (
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
)
HEADER = '"timestamp","metric_name","gpu_id","device","uuid","modelName","Hostname","container","pod","namespace","value","labels_raw"\n'
MODEL = "NVIDIA H100 80GB HBM3"
START = datetime(2025, 7, 18, 20, 42, 34, tzinfo=timezone.utc)
# Each metric's value range, roughly the sample's (utilisation %, MiB, °C, W, MHz).
_SCALE = (100, 100, 100, 100, 81000, 81000, 90, 700, 1980, 2619)


@dataclass(frozen=True)
class Fleet:
    hosts: int = 1000
    gpus_per_host: int = 8
    interval_s: int = 15
    start: datetime = START

    @property
    def gpus(self) -> int:
        return self.hosts * self.gpus_per_host

    def samples_per_tick(self) -> int:
        return self.gpus * len(METRICS)

    def ticks_for(self, samples: int) -> int:
        return -(-samples // self.samples_per_tick())

    def hostname(self, host: int) -> str:
        return f"bench-dgx-{host:05d}"

    def uuid(self, host: int, gpu: int) -> str:
        n = host * self.gpus_per_host + gpu
        return f"GPU-{n:08x}-bench-{host:05d}-{gpu:04x}-{n:012x}"

    @staticmethod
    def value(tick: int, gpu_number: int, metric: int) -> int:
        """Deterministic, integral values: exact sums whatever order they are added in."""
        return (tick * 7 + gpu_number * 13 + metric * 3) % _SCALE[metric]

    def timestamp(self, tick: int) -> datetime:
        return self.start + timedelta(seconds=tick * self.interval_s)

    def totals(self, ticks: int) -> tuple[int, int]:
        """(sample count, sum of values) of `ticks` ticks."""
        total = 0
        for tick in range(ticks):
            for metric in range(len(METRICS)):
                total += sum(self.value(tick, n, metric) for n in range(self.gpus))
        return ticks * self.samples_per_tick(), total

    def write_dcgm_csv(self, path: Path, *, ticks: int, first_tick: int = 0) -> tuple[int, int]:
        """The DCGM CSV of ticks [first_tick, first_tick + ticks); returns (samples, sum of values)."""
        prefixes = []  # per GPU: the quoted columns between metric_name and value
        for host in range(self.hosts):
            name = self.hostname(host)
            for gpu in range(self.gpus_per_host):
                uuid = self.uuid(host, gpu)
                raw = (
                    f'DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="{name}",UUID="{uuid}",__name__="{{metric}}",'
                    f'device="nvidia{gpu}",gpu="{gpu}",instance="{name}:9400",job="dgx_dcgm_exporter",modelName="{MODEL}"'
                )
                labels = raw.replace('"', '""')  # CSV quoting doubles the quotes inside a field
                prefixes.append((f'"{gpu}","nvidia{gpu}","{uuid}","{MODEL}","{name}","","",""', labels))
        count = total = 0
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.write(HEADER)
            for tick in range(first_tick, first_tick + ticks):
                stamp = self.timestamp(tick).strftime("%Y-%m-%dT%H:%M:%SZ")
                for metric, metric_name in enumerate(METRICS):
                    lines = []
                    for n, (prefix, labels) in enumerate(prefixes):
                        value = self.value(tick, n, metric)
                        total += value
                        lines.append(
                            f'"{stamp}","{metric_name}",{prefix},"{value}","{labels.replace("{metric}", metric_name)}"\n'
                        )
                    out.write("".join(lines))
                    count += len(lines)
        return count, total

    def write_copy_rows(self, path: Path, *, ticks: int, first_tick: int = 0) -> int:
        """The same samples as COPY text of a row per sample (gpu_id, metric_id, timestamp, value, label_set_id).

        GPU ids are 1..gpus, metric ids 1..10 and label set ids 1..hosts, as a fresh database assigns them.
        """
        count = 0
        with open(path, "w", encoding="ascii") as out:
            for tick in range(first_tick, first_tick + ticks):
                stamp = self.timestamp(tick).strftime("%Y-%m-%d %H:%M:%S+00")
                for metric in range(len(METRICS)):
                    out.write("".join(
                        f"{n + 1}\t{metric + 1}\t{stamp}\t{self.value(tick, n, metric)}\t{n // self.gpus_per_host + 1}\n"
                        for n in range(self.gpus)
                    ))
                    count += self.gpus
        return count

    def write_reading_rows(self, path: Path, *, ticks: int, first_tick: int = 0) -> int:
        """The same samples as `telemetry_reading` COPY text (gpu_id, timestamp, label_set_id, values), one row per GPU and tick."""
        count = 0
        with open(path, "w", encoding="ascii") as out:
            for tick in range(first_tick, first_tick + ticks):
                stamp = self.timestamp(tick).strftime("%Y-%m-%d %H:%M:%S+00")
                out.write("".join(
                    f"{n + 1}\t{stamp}\t{n // self.gpus_per_host + 1}\t"
                    f"{{{','.join(str(self.value(tick, n, metric)) for metric in range(len(METRICS)))}}}\n"
                    for n in range(self.gpus)
                ))
                count += self.gpus * len(METRICS)
        return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=13, help="time steps (80,000 samples each with 1,000 hosts)")
    parser.add_argument("--interval", type=int, default=15, help="seconds between ticks")
    parser.add_argument("--csv", type=Path, help="write a DCGM CSV here")
    parser.add_argument("--copy", type=Path, help="write COPY rows, one per sample, here")
    args = parser.parse_args(argv)
    fleet = Fleet(hosts=args.hosts, gpus_per_host=args.gpus_per_host, interval_s=args.interval)
    if args.csv:
        count, total = fleet.write_dcgm_csv(args.csv, ticks=args.ticks)
        print(f"{args.csv}: {count} samples, value sum {total}, {args.csv.stat().st_size} bytes")
    if args.copy:
        count = fleet.write_copy_rows(args.copy, ticks=args.ticks)
        print(f"{args.copy}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
