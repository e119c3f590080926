"""A build killed midway leaves no partial bundle: the next run rebuilds, or reuses only a complete bundle."""
import json
import os
import signal
import subprocess
import sys
import textwrap

from senti.model.recipes.default_bundle import remove_stale_builds
from tests.conftest import ROOT

# Runs the real build_default_bundle with its expensive part (_build) replaced: the folder protocol is under test.
BUILD = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from senti.model.recipes import default_bundle as db
    out, mode = Path(sys.argv[1]), sys.argv[2]

    def fake_build(tmp, files, checksums, fingerprint, progress):
        (tmp / "model.onnx").write_bytes(b"half a model")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-build, as a killed `make model` does
        (tmp / "model.onnx").write_bytes(b"a whole model")
        return {"files": {"model": "model.onnx"}, "provenance": {"fingerprint": fingerprint}}

    db._build = fake_build
    db.input_files = lambda: {}
    db.build_default_bundle(out, progress=False)
    print(json.dumps(sorted(p.name for p in out.iterdir())))
""")


def build(out, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BUILD, str(out), mode], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_a_killed_build_leaves_no_bundle_and_the_next_run_rebuilds_and_cleans_up(tmp_path):
    out = tmp_path / "bundles" / "e5-small"
    killed = build(out, "kill")
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-written where `make run` looks
    [leftover] = (tmp_path / "bundles").iterdir()
    assert leftover.name.startswith(".e5-small.building-") and (leftover / "model.onnx").read_bytes() == b"half a model"
    done = build(out, "complete")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["bundle.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"a whole model"
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["e5-small"]  # the leftover is gone
    again = build(out, "kill")  # complete and current: reused, never rebuilt (so never killed)
    assert again.returncode == 0 and json.loads(again.stdout) == ["bundle.json", "model.onnx"]


def test_a_kill_between_the_two_renames_puts_the_previous_bundle_back(tmp_path):
    out = tmp_path / "e5-small"
    previous = tmp_path / ".e5-small.old-999999999-1"  # a pid no process has
    previous.mkdir()
    (previous / "bundle.json").write_text("{}")
    running = tmp_path / f".e5-small.building-{os.getpid()}-x"  # a build in progress (this process): kept
    running.mkdir()
    assert remove_stale_builds(out) == []
    assert (out / "bundle.json").is_file() and running.is_dir() and not previous.exists()
