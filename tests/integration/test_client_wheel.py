"""The client distribution installs alone into a fresh virtual environment and calls a real server, sync and async."""
import json
import re
import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT, running_server
from tests.test_layering import build_wheel

# The four direct dependencies client/pyproject.toml names, plus what they need in turn.
ALLOWED = {"grpcio", "grpcio-health-checking", "protobuf", "googleapis-common-protos", "typing-extensions"}
HEAVY = ("numpy", "onnxruntime", "pydantic", "tokenizers", "sentencepiece", "torch", "senti.model", "senti.server")

PROBE = r'''
import asyncio, importlib.util, json, sys
from senti.client import AsyncSentiClient, SentiClient
target = sys.argv[1]
with SentiClient(target, timeout=30) as client:
    sync = [p.label for p in client.predict(["很好", "很差"])]
    streamed = sorted((r.id, r.prediction.label) for r in client.stream([("a", "很好"), ("b", "很差")]))
async def calls():
    async with AsyncSentiClient(target, timeout=30) as client:
        return [p.label for p in await client.predict(["很好", "很差"])], await client.health()
labels, health = asyncio.run(calls())
def present(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
print(json.dumps({"sync": sync, "async": labels, "stream": streamed, "health": health,
                  "heavy": [m for m in %r if present(m)]}))
''' % (HEAVY,)


def lock_constraints(path: Path) -> Path:
    """The lock's exact versions (without hashes) as a constraints file: the fresh venv gets the locked versions."""
    pins = re.findall(r"^([A-Za-z0-9._-]+==[^\s\\;]+)", (ROOT / "requirements" / "lock.txt").read_text(), re.MULTILINE)
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.mark.slow
def test_client_wheel_installs_alone_and_calls_a_real_server(tmp_path, tiny_bundle):
    wheel = build_wheel(ROOT / "client", tuple(p.name for p in (ROOT / "client").iterdir()), tmp_path / "wheel")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel),
                    "-c", str(lock_constraints(tmp_path / "constraints.txt"))], check=True, timeout=600)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json", "--exclude-editable"],
                            check=True, capture_output=True, text=True).stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)} - {"pip", "setuptools"}
    assert installed == ALLOWED | {"senti-client"}
    with running_server(tiny_bundle) as (running, client):
        target = f"127.0.0.1:{running.port}"
        expected = [p.label for p in client.predict(["很好", "很差"])]
        out = subprocess.run([str(python), "-c", PROBE, target], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        cli = subprocess.run([str(env_dir / "bin" / "senti"), "--target", target, "predict", "很好"],
                             capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout)
    assert result == {"sync": expected, "async": expected, "stream": [["a", expected[0]], ["b", expected[1]]],
                      "health": "SERVING", "heavy": []}
    assert cli.returncode == 0 and json.loads(cli.stdout)["label"] == expected[0]
