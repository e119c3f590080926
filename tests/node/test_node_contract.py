"""The Node contract test (tests/node/contract.test.js) against a real Python server, and `buf lint` of protos/.

Needs node and npm; `npm ci` installs exactly package-lock.json into tests/node/node_modules (once; CI runs it
before the tests) and never rewrites the lock."""
import os
import shutil
import subprocess
from pathlib import Path

import google.rpc.status_pb2
import pytest

from tests.conftest import running_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HEALTH_PROTO = HERE / "health.proto"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """tests/node/node_modules, installed from the pinned versions when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the cross-language contract test (apt-get install nodejs npm)")
    modules = HERE / "node_modules"
    if not (modules / "@grpc" / "grpc-js").is_dir() or not (modules / ".bin" / "buf").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    return modules


def test_node_client_calls_every_rpc_and_health(node_modules, tiny_bundle):
    with running_server(tiny_bundle) as (running, _):
        env = {**os.environ, "SENTI_TARGET": f"127.0.0.1:{running.port}", "HEALTH_PROTO": str(HEALTH_PROTO)}
        out = subprocess.run(["node", "--test", "contract.test.js"], cwd=HERE, env=env, capture_output=True,
                             text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout and "# pass 6" in out.stdout


def test_buf_lint_passes_on_protos(node_modules):
    out = subprocess.run([str(node_modules / ".bin" / "buf"), "lint"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("vendored", ["google/rpc/status.proto", "google/api/annotations.proto",
                                      "google/api/http.proto"])
def test_vendored_googleapis_protos_match_the_wheel(vendored):
    """buf reads googleapis protos from third_party/; each must be the file protoc uses from the wheel."""
    wheel = Path(google.rpc.status_pb2.__file__).resolve().parents[2] / vendored
    assert (ROOT / "third_party/googleapis" / vendored).read_bytes() == wheel.read_bytes()
