"""The e2e suite (tests/k8s-e2e, scripts/e2e-k8s) where no cluster is reachable, as here: it
imports cleanly, collects its tests, and skips with a clear message and exit status 0."""

import os
import shutil
import sys

import pytest
from conftest import ROOT, run

NO_CLUSTER = {"KUBECONFIG": "/nonexistent/brix-e2e-kubeconfig"}


def env(**extra):
    e = {k: v for k, v in os.environ.items()
         if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    e.update(extra)
    return e


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing: see the next test")
def test_script_skips_without_a_cluster():
    out = run([str(ROOT / "scripts" / "e2e-k8s")], env=env(**NO_CLUSTER), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("SKIPPED: no cluster reachable"), out.stdout


def test_script_skips_without_kubectl(tmp_path):
    bash = shutil.which("bash")
    (tmp_path / "bin").mkdir()
    for tool in ("dirname",):  # what the script needs before its kubectl check
        os.symlink(shutil.which(tool), tmp_path / "bin" / tool)
    out = run([bash, str(ROOT / "scripts" / "e2e-k8s")], env=env(PATH=str(tmp_path / "bin")),
              timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("SKIPPED: no cluster reachable (kubectl not found"), out.stdout


def test_suite_collects_and_skips_without_a_cluster():
    out = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "k8s-e2e")], env=env(**NO_CLUSTER), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SKIPPED: no cluster reachable" in out.stdout
    assert " passed" not in out.stdout and " failed" not in out.stdout
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.split()[0].isdigit() and int(summary.split()[0]) >= 10, summary
