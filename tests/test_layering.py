"""Layering and packaging rules: one import namespace, an engine that knows nothing of gRPC, a light client."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Imports of the installed folders by their old top-level names (`import model`, `from server.x import`); the stubs
# are senti.v1 (protos/ holds only the .proto and its generator script).
TOP_LEVEL_IMPORT = re.compile(r"^\s*(from|import)\s+(model|server|client|protos(?=\S*\s+import\s+senti_pb2))\b",
                              re.MULTILINE)
SOURCE_DIRS = ("model", "server", "client", "batch", "loadtest", "tests", "scripts")


def test_every_import_goes_through_the_senti_namespace():
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            match = TOP_LEVEL_IMPORT.search(path.read_text())
            assert match is None, f"{path.relative_to(ROOT)}: {match.group(0).strip()!r}; import senti.{match.group(2)}"


def test_model_package_never_imports_grpc_or_the_transports():
    for path in (ROOT / "model").rglob("*.py"):
        source = path.read_text()
        for forbidden in ("import grpc", "from grpc", "senti.v1", "senti.client", "senti.server"):
            assert forbidden not in source, f"{path.relative_to(ROOT)} must not use {forbidden!r}"


def test_client_imports_only_its_own_distribution():
    """client/ is installed alone (client/pyproject.toml): it may use grpc and senti.v1, never the engine."""
    for path in (ROOT / "client").rglob("*.py"):
        source = path.read_text()
        for forbidden in ("senti.model", "senti.server", "import numpy", "import onnxruntime", "import pydantic"):
            assert forbidden not in source, f"{path.relative_to(ROOT)} must not use {forbidden!r}"


def test_serving_imports_neither_torch_nor_transformers():
    probe = ("import sys, senti.server.main, senti.server.app, senti.model.engine, senti.client.cli; "
             "heavy = sorted(m for m in ('torch', 'transformers', 'modelscope') if m in sys.modules); "
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _top_level_names(wheel: Path) -> set[str]:
    """First path components of the importable files in a wheel (dist-info excluded)."""
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}


def build_wheel(project: Path, sources: tuple[str, ...], out: Path) -> Path:
    """Builds the wheel of a copy of `sources` (no stale build/ folders, nothing written into the checkout)."""
    tree = out / "src"
    tree.mkdir(parents=True)
    for name in sources:
        copy = shutil.copytree if (project / name).is_dir() else shutil.copy2
        copy(project / name, tree / name, **({"ignore": IGNORED} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(tree)], check=True, timeout=300)
    [wheel] = out.glob("*.whl")
    return wheel


IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
SERVER_SOURCES = ("pyproject.toml", "README.md", "model", "server", "batch")


@pytest.mark.slow
@pytest.mark.parametrize("project, expected_packages", [
    (".", {"senti/model", "senti/model/recipes", "senti/server", "senti/server/http", "senti/batch"}),
    ("client", {"senti/client", "senti/v1"}),
])
def test_wheels_install_only_the_senti_namespace(tmp_path, project, expected_packages):
    if project == ".":
        wheel = build_wheel(ROOT, SERVER_SOURCES, tmp_path)
    else:
        wheel = build_wheel(ROOT / project, tuple(p.name for p in (ROOT / project).iterdir()), tmp_path)
    assert _top_level_names(wheel) == {"senti"}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert packages == expected_packages
    assert "senti/__init__.py" not in names, "senti is a namespace package shared by both distributions"
    if project == ".":  # the page and the OpenAPI document ship with the server
        assert {"senti/server/http/static/index.html", "senti/server/http/openapi.json"} <= set(names)
