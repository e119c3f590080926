"""senti-batch stays out of the serving path: the server never imports Ray or pyarrow, the serving image's
requirements hold neither, and the batch package uses the engine, not the transports."""
import re
import subprocess
import sys

from tests.conftest import ROOT

BATCH_ONLY = {"ray", "pyarrow", "pandas"}


def test_serving_imports_neither_ray_nor_pyarrow():
    probe = ("import sys, senti.server.main, senti.server.app, senti.model.engine; "
             "print(','.join(sorted(m for m in ('ray', 'pyarrow', 'pandas') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_serving_image_installs_no_batch_dependency_and_the_batch_set_does():
    sys.path.insert(0, str(ROOT / "requirements"))
    try:
        from subset import canonical, subset
    finally:
        sys.path.pop(0)

    def names(env: str) -> set[str]:
        return {canonical(line.split("==")[0]) for line in subset(env) if "==" in line and not line.startswith(" ")}

    assert not names("serve") & BATCH_ONLY
    assert BATCH_ONLY <= names("batch")
    assert BATCH_ONLY <= names("dev")  # the tests run with them
    assert not re.search(r"\bray\b|\[batch\]|batch\.in|pyarrow", (ROOT / "Dockerfile").read_text(), re.IGNORECASE)


def test_batch_package_uses_the_engine_not_the_transports():
    forbidden = re.compile(r"^\s*(?:from|import)\s+(grpc|senti\.server|senti\.client|senti\.v1)\b", re.MULTILINE)
    for path in (ROOT / "batch").rglob("*.py"):
        match = forbidden.search(path.read_text())
        assert match is None, f"{path.relative_to(ROOT)} imports {match.group(1)}"


def test_help_needs_no_ray_start():
    done = subprocess.run([sys.executable, "-m", "senti.batch", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--block-rows" in done.stdout and "resume" in done.stdout
