"""requirements/modelscope/lock.txt (ModelScope's venv for the parity tests) is in step with its input and hashed.

Reads files only (no venv needed). After editing requirements/modelscope/requirements.in, run
`python3 scripts/modelscope_venv.py --lock` and commit the new lock.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_senti_modelscope_venv", ROOT / "scripts" / "modelscope_venv.py")
venv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(venv)
LOCK_TEXT = venv.LOCK.read_text(encoding="utf-8")
PINS = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", LOCK_TEXT, re.M))


def test_lock_matches_its_input():
    assert venv.recorded_digest() == venv.inputs_digest(), (
        "requirements/modelscope/requirements.in changed since lock.txt was made: "
        "run `python3 scripts/modelscope_venv.py --lock`")


def test_lock_pins_what_the_parity_tests_assume():
    assert PINS["modelscope"] == "1.40.2"
    assert PINS["transformers"] == "4.57.6"
    assert PINS["torch"] == "2.13.0+cpu"  # the local CPU wheel
    assert not [name for name in PINS if name.startswith("nvidia-") or name == "triton"]


def test_every_pin_is_hashed():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK_TEXT.split("\n", 1)[1])
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9._-]+==", b)]
    assert len(pinned) == len(PINS) > 30
    assert all("--hash=sha256:" in b for b in pinned)


def test_not_an_input_of_the_main_lock():
    # tests/test_lock.py treats every requirements/*.in as an input of requirements/lock.txt; this one must not be.
    assert venv.IN_FILE.parent != ROOT / "requirements"
