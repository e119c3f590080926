"""Generates the Python stubs of protos/senti/v1/senti.proto into the client distribution (client/v1 = senti.v1)."""
import shutil
import sys
import tempfile
from pathlib import Path

import google.rpc.status_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("senti/v1/senti.proto")  # relative to protos/: the import path is the package path, senti.v1
STUBS = ROOT / "client" / "v1"
GENERATED = ("senti_pb2.py", "senti_pb2.pyi", "senti_pb2_grpc.py")
# googleapis-common-protos ships google/rpc/status.proto beside its generated module.
GOOGLEAPIS = Path(google.rpc.status_pb2.__file__).resolve().parents[2]
# protoc.main, unlike `python -m grpc_tools.protoc`, does not add the well-known types by itself.
WELL_KNOWN = Path(grpc_tools.__file__).resolve().parent / "_proto"


def generate(target: Path = STUBS) -> None:
    """Runs protoc for senti.proto with Python, gRPC and .pyi outputs and writes them into target."""
    with tempfile.TemporaryDirectory() as out:
        args = [
            "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"-I{GOOGLEAPIS}", f"-I{WELL_KNOWN}",
            f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}", str(ROOT / "protos" / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            shutil.copyfile(Path(out) / PROTO.parent / name, target / name)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else STUBS)
