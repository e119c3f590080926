#!/usr/bin/env python3
"""ModelScope's own pipelines in a virtual environment of their own, for the parity tests (tests/modelscope).

ModelScope 1.40.2's StructBERT does not run under senti's transformers 5.23 (SbertConfig lacks attributes that
transformers 5 expects, e.g. `is_decoder`), and senti's environment must not change for it. So this script makes
a separate venv from requirements/modelscope/lock.txt (hash-checked, --no-deps, like every senti environment):
modelscope[framework] 1.40.2 with transformers 4.57.6, the last 4.x release, and torch 2.13.0 (the local CPU
wheel; an unpinned torch would pull gigabytes of CUDA packages).

    python3 scripts/modelscope_venv.py            make the venv if needed; print its python (last line of stdout)
    python3 scripts/modelscope_venv.py --python   print the python of an up-to-date venv, or exit 1 (builds nothing)
    python3 scripts/modelscope_venv.py --lock     re-resolve requirements/modelscope/requirements.in into
                                                  lock.txt with hashes (pip-compile from .venv; LOCK_ARGS=...)

The venv lives in $SENTI_MODELSCOPE_HOME (default: .cache/modelscope in the repository, which ignores itself
for git) under venv-<key>, the key hashing the lock, the Python version and the platform: a changed lock makes a
new venv and the old one is removed; repeated runs reuse it. A build that stopped half way has no stamp file and
is redone. Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "requirements"))
from fingerprint import requirement_lines  # noqa: E402 - the one reader of requirements files (the main lock's)
REQ_DIR = ROOT / "requirements" / "modelscope"
IN_FILE = REQ_DIR / "requirements.in"
LOCK = REQ_DIR / "lock.txt"
STAMP = ".senti-complete"
SCHEME = 1  # bump to force new venvs when this script changes how they are made
PYTHON = (3, 11)  # the lock and the local torch wheel (cp311) are for this Python
INPUTS_PREFIX = "# inputs-sha256: "
SMOKE = ("import modelscope, torch, transformers\n"
         "from modelscope.pipelines import pipeline\n"
         "from modelscope.models.nlp.structbert.text_classification import SbertForSequenceClassification\n"
         "print(modelscope.__version__, transformers.__version__, torch.__version__)\n")


def home() -> Path:
    """Where the venvs live."""
    return Path(os.environ.get("SENTI_MODELSCOPE_HOME") or ROOT / ".cache" / "modelscope").expanduser()


def key() -> str:
    """Names the venv: the lock's bytes, the Python minor version, the platform, this script's scheme."""
    h = hashlib.sha256(LOCK.read_bytes())
    h.update(f"|py{PYTHON[0]}.{PYTHON[1]}|{sys.platform}|{platform.machine()}|scheme{SCHEME}".encode())
    return h.hexdigest()[:16]


def venv_dir() -> Path:
    return home() / f"venv-{key()}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ready() -> Path | None:
    """The up-to-date venv's python, or None."""
    venv = venv_dir()
    return venv_python(venv) if (venv / STAMP).is_file() and venv_python(venv).exists() else None


def base_python() -> str:
    """The interpreter the venv is made from (SENTI_MODELSCOPE_BASE_PYTHON, else this one), checked to be 3.11."""
    python = os.environ.get("SENTI_MODELSCOPE_BASE_PYTHON") or sys.executable
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.split()
    if tuple(map(int, out)) != PYTHON:
        raise SystemExit(f"modelscope_venv: {python} is Python {'.'.join(out)}; the lock and the local torch wheel "
                         f"need {PYTHON[0]}.{PYTHON[1]} (set SENTI_MODELSCOPE_BASE_PYTHON)")
    return python


def _run(cmd: list, **kwargs) -> None:
    print("+ " + " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def build() -> Path:
    """Makes the venv unless an up-to-date one exists (one build at a time: a lock file serialises them)."""
    found = ready()
    if found:
        return found
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text("# made by scripts/modelscope_venv.py\n*\n", encoding="utf-8")
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = ready()  # another process may have built it while this one waited
        if found:
            return found
        venv = venv_dir()
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one
        started = time.monotonic()
        print(f"modelscope_venv: making {venv} from {LOCK.relative_to(ROOT)} (a few minutes, once)",
              file=sys.stderr, flush=True)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        _run([base_python(), "-m", "venv", str(venv)], env=env)
        py = venv_python(venv)
        _run([py, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(LOCK)], env=env)
        _run([py, "-m", "pip", "check"], env=env)
        smoke_env = {**env, "MODELSCOPE_CACHE": str(root / "ms-cache"), "HF_HUB_OFFLINE": "1"}
        _run([py, "-c", SMOKE], env=smoke_env)
        seconds = time.monotonic() - started
        (venv / STAMP).write_text(json.dumps({"key": key(), "seconds": round(seconds, 1),
                                              "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        for old in root.glob("venv-*"):  # venvs of older locks: 1.7 GB each
            if old != venv:
                shutil.rmtree(old, ignore_errors=True)
        print(f"modelscope_venv: made in {seconds:.0f} s", file=sys.stderr, flush=True)
        return py


def inputs_digest() -> str:
    """sha256 of requirements.in's requirement lines; stamped into lock.txt's header by --lock."""
    return hashlib.sha256("\n".join(requirement_lines(IN_FILE)).encode("utf-8")).hexdigest()


def recorded_digest() -> str | None:
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line.startswith(INPUTS_PREFIX):
            return line[len(INPUTS_PREFIX):].strip()
        if line and not line.startswith("#"):
            return None
    return None


def lock() -> None:
    """pip-compile requirements.in -> lock.txt (hashes, extras stripped, as `make lock` does), then stamp it."""
    compile_ = ROOT / ".venv" / "bin" / "pip-compile"
    if not compile_.exists():
        raise SystemExit("modelscope_venv: --lock needs pip-compile in .venv (make install)")
    cmd = [str(compile_), "--quiet", "--generate-hashes", "--strip-extras", "--allow-unsafe", "--no-emit-index-url",
           "--no-emit-find-links", "--annotation-style=split", *os.environ.get("LOCK_ARGS", "").split(),
           "--output-file", str(LOCK.relative_to(ROOT)), str(IN_FILE.relative_to(ROOT))]
    _run(cmd, cwd=ROOT, env={**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 scripts/modelscope_venv.py --lock"})
    text = LOCK.read_text(encoding="utf-8")
    if re.search(r"^(nvidia-|triton==)", text, re.M | re.I) or not re.search(r"^torch==2\.13\.0\+cpu ", text, re.M):
        raise SystemExit("modelscope_venv: torch did not resolve to the CPU build 2.13.0+cpu")
    lines = [line for line in text.splitlines() if not line.startswith(INPUTS_PREFIX)]
    end = 0
    while end < len(lines) and lines[end].startswith("#"):
        end += 1
    at = end - 1 if end and lines[end - 1] == "#" else end
    lines[at:at] = [INPUTS_PREFIX + inputs_digest()]
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv == ["--python"]:
        found = ready()
        if found is None:
            print(f"modelscope_venv: no up-to-date venv in {home()}", file=sys.stderr)
            return 1
        print(found)
        return 0
    if argv == ["--lock"]:
        lock()
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
