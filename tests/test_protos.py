"""The committed stubs are what protos/senti.proto generates today (stale stubs fail here and in CI)."""
from pathlib import Path

from protos.generate import ROOT, generate

GENERATED = ("senti_pb2.py", "senti_pb2.pyi", "senti_pb2_grpc.py")


def test_committed_stubs_are_up_to_date(tmp_path: Path):
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / "protos" / name).read_text()
        committed = (ROOT / "protos" / name).read_text()
        assert fresh == committed, f"protos/{name} is stale: run `make proto` and commit the result"

