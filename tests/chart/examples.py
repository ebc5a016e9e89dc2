"""The chart's install examples: every one in the seed README, plus the chart's ci/*-values.yaml.

Each example is `helm template` arguments after the chart path, exactly as a user types them
(with ./deploy/helm/telemetry-pipeline replaced by this repository's chart). `make chart-test`
renders every example with each pinned helm and validates the result; the pytest suite reads
the same renders.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "telemetry-pipeline"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

# name -> (release name, arguments after the chart)
SEED_EXAMPLES: dict[str, tuple[str, list[str]]] = {
    # Installation / Quick Start
    "quick-start": ("my-telemetry-pipeline", []),
    # Installation / Custom Installation
    "custom-installation": ("my-telemetry-pipeline", [
        "--set", "apiGateway.ingress.enabled=true",
        "--set", "apiGateway.ingress.hosts[0].host=telemetry-api.example.com",
        "--set", "collector.persistence.size=50Gi",
        "--set", "streamer.workers=4",
    ]),
    # Installation / Production Installation (the values file, verbatim)
    "production": ("telemetry-production", ["-f", str(EXAMPLES_DIR / "production-values.yaml")]),
    # Usage Examples 1: Installing Telemetry Streamer Only
    "streamer-only": ("telemetry-streamer", [
        "--set", "collector.enabled=false",
        "--set", "apiGateway.enabled=false",
        "--set", "streamer.workers=4",
        "--set", "streamer.rate=20.0",
    ]),
    # Usage Examples 2: Installing Collector with High Availability
    "collector-ha": ("telemetry-collector", [
        "--set", "streamer.enabled=false",
        "--set", "apiGateway.enabled=false",
        "--set", "collector.replicaCount=3",
        "--set", "collector.autoscaling.enabled=true",
        "--set", "collector.persistence.size=100Gi",
    ]),
    # Usage Examples 3: Installing API Gateway with Ingress
    "api-ingress": ("telemetry-api", [
        "--set", "streamer.enabled=false",
        "--set", "collector.enabled=false",
        "--set", "apiGateway.ingress.enabled=true",
        "--set", "apiGateway.ingress.hosts[0].host=api.telemetry.local",
    ]),
    # Usage Examples 4: Custom CSV Data Configuration
    "custom-csv": ("my-telemetry", [
        "--set", "streamer.csvData=",
        "--set-file", f"streamer.csvData={EXAMPLES_DIR / 'my-data.csv'}",
    ]),
    # Usage Examples 5: Development Setup
    "development": ("telemetry-dev", [
        "--set", "collector.persistence.enabled=false",
        "--set", "mq.persistence.enabled=false",
        "--set", "apiGateway.replicaCount=1",
        "--set", "collector.replicaCount=1",
        "--set-string", "collector.resources.requests.cpu=50m",
        "--set-string", "collector.resources.requests.memory=128Mi",
    ]),
    # Upgrading: `--reuse-values --set collector.image.tag=v2.0.0`
    "upgrade-collector-tag": ("my-telemetry-pipeline", ["--set", "collector.image.tag=v2.0.0"]),
    # Configuration snippets, each as a values file
    "seed-streamer": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-streamer.yaml")]),
    "seed-collector": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-collector.yaml")]),
    "seed-api-gateway": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-api-gateway.yaml")]),
    "seed-resources": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-resources.yaml")]),
    "seed-persistence": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-persistence.yaml")]),
    "seed-security": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-security.yaml")]),
    "seed-monitoring": ("my-telemetry-pipeline", ["-f", str(EXAMPLES_DIR / "seed-monitoring.yaml")]),
}


def ci_examples() -> dict[str, tuple[str, list[str]]]:
    """The chart's own scenarios: ci/<name>-values.yaml -> ci-<name>."""
    return {
        "ci-" + path.name.removesuffix("-values.yaml"): ("telemetry", ["-f", str(path)])
        for path in sorted((CHART / "ci").glob("*-values.yaml"))
    }


def all_examples() -> dict[str, tuple[str, list[str]]]:
    return {**SEED_EXAMPLES, **ci_examples()}
