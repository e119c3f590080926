"""Generates the Python stubs of protos/senti.proto into a folder (the repository root by default)."""
import sys
from pathlib import Path

import google.rpc.status_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# googleapis-common-protos ships google/rpc/status.proto beside its generated module.
GOOGLEAPIS = Path(google.rpc.status_pb2.__file__).resolve().parents[2]
# protoc.main, unlike `python -m grpc_tools.protoc`, does not add the well-known types by itself.
WELL_KNOWN = Path(grpc_tools.__file__).resolve().parent / "_proto"


def generate(out_dir: Path = ROOT) -> None:
    """Runs protoc for senti.proto with Python, gRPC and .pyi outputs under out_dir."""
    args = [
        "grpc_tools.protoc", f"-I{ROOT}", f"-I{GOOGLEAPIS}", f"-I{WELL_KNOWN}",
        f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", f"--pyi_out={out_dir}",
        str(ROOT / "protos" / "senti.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
