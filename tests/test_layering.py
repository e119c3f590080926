"""Layering rules: the engine knows nothing of gRPC, and the server process never loads torch."""
import subprocess
import sys

from protos.generate import ROOT


def test_model_package_never_imports_grpc_or_protos():
    for path in (ROOT / "model").rglob("*.py"):
        source = path.read_text()
        for forbidden in ("import grpc", "from grpc", "from protos", "import protos", "from client", "import client",
                          "from server", "import server"):
            assert forbidden not in source, f"{path.relative_to(ROOT)} must not use {forbidden!r}"


def test_serving_imports_neither_torch_nor_transformers():
    probe = ("import sys, server.main, server.app, model.engine, client.cli; "
             "heavy = sorted(m for m in ('torch', 'transformers', 'modelscope') if m in sys.modules); "
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
