"""The Prometheus peer bench's data: one set of samples in both files, of the shape the comparison assumes."""
import re

from bench import prometheus_peer
from bench.fleet import METRICS
from telemetry.ingest.streamer.sources import read_path

# name{labels} value timestamp, in seconds, as the bench writes each OpenMetrics sample.
OPENMETRICS_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+) (\d+)$')


def openmetrics_samples(path) -> list[tuple[str, str, int, float]]:
    samples, families = [], []
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
            continue
        name, labels, value, seconds = OPENMETRICS_SAMPLE.match(line).groups()
        assert name == families[-1], "a family's samples are contiguous"
        uuid = dict(re.findall(r'(\w+)="([^"]*)"', labels))["UUID"]
        samples.append((uuid, name, int(seconds) * 1_000_000, float(value)))
    assert families == list(METRICS)
    return samples


def test_both_files_hold_the_same_samples(tmp_path):
    workload = prometheus_peer.Workload(gpus=4, hours=1)
    files = prometheus_peer.files_write(tmp_path, workload)
    rejects = []
    from_csv = [(s.gpu.uuid, s.metric, s.timestamp_us, s.value)
                for s in read_path(files["csv"], on_reject=lambda *args: rejects.append(args))]
    from_openmetrics = openmetrics_samples(files["openmetrics"])
    assert not rejects
    assert len(from_csv) == len(from_openmetrics) == files["samples"] == 4 * 10 * 360
    assert sorted(from_csv) == sorted(from_openmetrics)
    # Each series is in time order in the OpenMetrics file, as promtool reads it.
    for i in range(0, len(from_openmetrics), 360):
        series = from_openmetrics[i:i + 360]
        assert len({(uuid, name) for uuid, name, _, _ in series}) == 1
        assert [t for _, _, t, _ in series] == sorted({t for _, _, t, _ in series})


def test_values_are_constant_noisy_or_slow_as_dcgm_reports_them():
    values = prometheus_peer.gpu_values(0, prometheus_peer.FULL.steps)
    as_float = {metric: [float(v) for v in column] for metric, column in values.items()}
    assert {m for m, column in as_float.items() if len(set(column)) == 1} >= {"DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_MEM_CLOCK"}
    power, temperature = as_float["DCGM_FI_DEV_POWER_USAGE"], as_float["DCGM_FI_DEV_GPU_TEMP"]
    assert len(set(power)) > len(power) // 2  # noisy: most values differ
    # Temperature moves by at most a degree a step, and spans a range over two days.
    assert max(abs(b - a) for a, b in zip(temperature, temperature[1:])) <= 1 and max(temperature) - min(temperature) > 10
    used, free = as_float["DCGM_FI_DEV_FB_USED"], as_float["DCGM_FI_DEV_FB_FREE"]
    assert {u + f for u, f in zip(used, free)} == {prometheus_peer.FB_TOTAL_MIB}
