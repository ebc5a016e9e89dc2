"""Render every install example with one helm binary: `helm lint --strict` and `helm template`.

usage: python tests/chart/render_examples.py HELM OUTDIR
Writes OUTDIR/<example>.yaml; exits non-zero on the first lint or render failure.
"""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from examples import CHART, all_examples  # noqa: E402

KUBE_VERSION = "1.30.0"


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def main(argv: list[str]) -> int:
    helm, outdir = argv[1], Path(argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("*.yaml"):
        old.unlink()
    version = run([helm, "version", "--short"]).stdout.strip()
    failures = 0
    for name, (release, args) in all_examples().items():
        lint = run([helm, "lint", "--strict", str(CHART), *args])
        if lint.returncode != 0:
            print(f"FAIL {version} lint {name}:\n{lint.stdout}{lint.stderr}", file=sys.stderr)
            failures += 1
            continue
        cmd = [helm, "template", release, str(CHART), "--namespace", "telemetry",
               "--kube-version", KUBE_VERSION, *args]
        result = run(cmd)
        if result.returncode != 0:
            print(f"FAIL {version} template {name}:\n{result.stderr}", file=sys.stderr)
            failures += 1
            continue
        (outdir / f"{name}.yaml").write_text(result.stdout)
        print(f"ok   {version} lint+template {name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
