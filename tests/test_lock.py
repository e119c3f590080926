"""requirements/lock.txt is in step with its inputs, pins every requirement, and is hash-locked.

Fast and offline: reads files only. When an input changed (requirements/*.in, or the dependency lists of
pyproject.toml and client/pyproject.toml), run `make lock` and commit the new lock.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
LOCK = REQ / "lock.txt"
ENVIRONMENTS = ("serve", "build", "ops", "dev", "bench")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_senti_requirements_{name}", REQ / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fingerprint = _load("fingerprint")
subset = _load("subset")


def _pins(lines: list[str]) -> dict[str, Version]:
    """{canonical name: version} of the `name==version` lines of a lock or subset."""
    pins = {}
    for line in lines:
        if line and not line[0].isspace() and not line.startswith("#"):
            req = Requirement(line.rstrip(" \\"))
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


LOCK_LINES = LOCK.read_text(encoding="utf-8").splitlines()
PINS = _pins(LOCK_LINES)


def _in_requirements(path: Path) -> list[Requirement]:
    reqs = []
    for line in fingerprint.requirement_lines(path):
        if not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def _pyproject_requirements() -> list[tuple[str, Requirement]]:
    own = set()
    found = []
    for name in fingerprint.PYPROJECTS:
        doc = tomllib.loads((ROOT / name).read_text(encoding="utf-8"))
        own.add(canonicalize_name(doc["project"]["name"]))
        lists = [doc.get("build-system", {}).get("requires", []), doc["project"].get("dependencies", [])]
        lists += doc["project"].get("optional-dependencies", {}).values()
        found += [(name, Requirement(item)) for items in lists for item in items]
    # The two distributions of this repository are installed from source, not from the lock.
    return [(name, req) for name, req in found if canonicalize_name(req.name) not in own]


def test_fingerprint_matches_inputs():
    recorded = fingerprint.recorded(LOCK)
    assert recorded, "requirements/lock.txt has no '# inputs-sha256:' header line: run `make lock`"
    assert recorded == fingerprint.compute(ROOT), (
        "requirements/*.in or the dependencies in pyproject.toml / client/pyproject.toml changed since "
        "requirements/lock.txt was made: run `make lock` and commit the new lock"
    )


def test_fingerprint_covers_every_input(tmp_path):
    for rel in ("requirements", "client"):
        (tmp_path / rel).mkdir()
    for path in REQ.glob("*.in"):
        shutil.copy(path, tmp_path / "requirements" / path.name)
    for rel in fingerprint.PYPROJECTS:
        shutil.copy(ROOT / rel, tmp_path / rel)
    base = fingerprint.compute(tmp_path)
    assert base == fingerprint.compute(ROOT)

    serve = tmp_path / "requirements" / "serve.in"
    original = serve.read_text(encoding="utf-8")
    serve.write_text(original + "\n# a comment-only edit needs no new lock\n", encoding="utf-8")
    assert fingerprint.compute(tmp_path) == base
    serve.write_text(original + "six==1.17.0\n", encoding="utf-8")
    assert fingerprint.compute(tmp_path) != base
    serve.write_text(original, encoding="utf-8")

    (tmp_path / "requirements" / "extra.in").write_text("six==1.17.0\n", encoding="utf-8")
    assert fingerprint.compute(tmp_path) != base
    (tmp_path / "requirements" / "extra.in").unlink()

    for rel in fingerprint.PYPROJECTS:
        path = tmp_path / rel
        text = path.read_text(encoding="utf-8")
        changed = re.sub(r'"grpcio>=1\.85\.1,<2"', '"grpcio>=1.85.2,<2"', text, count=1)
        assert changed != text, rel
        path.write_text(changed, encoding="utf-8")
        assert fingerprint.compute(tmp_path) != base, rel
        path.write_text(text, encoding="utf-8")
    assert fingerprint.compute(tmp_path) == base


@pytest.mark.parametrize("path", sorted(REQ.glob("*.in")), ids=lambda p: p.name)
def test_every_in_requirement_is_pinned_by_the_lock(path):
    reqs = _in_requirements(path)
    assert reqs, path
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in PINS, f"{path.name}: {req} is not in the lock: run `make lock`"
        assert req.specifier.contains(PINS[name], prereleases=True), f"{path.name}: {req} but the lock has {PINS[name]}"


def test_every_pyproject_dependency_is_satisfied_by_the_lock():
    reqs = _pyproject_requirements()
    assert len(reqs) > 10
    for source, req in reqs:
        name = canonicalize_name(req.name)
        assert name in PINS, f"{source}: {req} is not in the lock"
        assert req.specifier.contains(PINS[name], prereleases=True), f"{source}: {req} but the lock has {PINS[name]}"


def test_every_entry_is_hashed():
    entries = subset.parse_lock(LOCK)
    assert set(entries) == set(PINS)
    for name, (lines, _, _) in entries.items():
        hashes = [line for line in lines[1:] if re.fullmatch(r"\s*--hash=sha256:[0-9a-f]{64}( \\)?", line)]
        assert hashes and len(hashes) == len(lines) - 1, f"{name}: every lock entry needs its --hash lines"


def test_no_index_urls_or_local_paths():
    for line in LOCK_LINES:
        text = line.strip()
        assert not re.match(r"-(i|f|-index-url|-extra-index-url|-find-links|-trusted-host|e|-editable)\b", text), line
        assert "://" not in text and "file:/" not in text and " @ " not in text, line
        assert not re.search(r"(^|\s)(/|\./|\.\./|~/)\S", text.split("#", 1)[0]), line
        assert "/opt/" not in text, line


def test_torch_is_the_cpu_build():
    assert PINS["torch"] == Version("2.13.0+cpu")
    assert not [name for name in PINS if name.startswith("nvidia-") or name == "triton"]


def test_subsets_nest_and_serve_has_no_torch():
    subsets = {env: _pins(subset.subset(env, LOCK)) for env in ENVIRONMENTS}
    assert set(subsets["bench"]) == set(PINS), "bench.in includes every other .in: its subset is the whole lock"
    assert set(subsets["serve"]) <= set(subsets["build"]) <= set(subsets["dev"]) <= set(subsets["bench"])
    assert set(subsets["ops"]) <= set(subsets["dev"])
    for env in ENVIRONMENTS:
        for path in subset.in_files(env, REQ):
            for req in _in_requirements(path):
                assert canonicalize_name(req.name) in subsets[env], f"{env}: {req.name} missing from its subset"
    assert {"torch", "transformers", "onnx", "pytest"}.isdisjoint(subsets["serve"])
    assert "torch" in subsets["build"] and "pip-tools" in subsets["dev"] and "locust" in subsets["bench"]
