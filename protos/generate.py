"""Generates from protos/senti/v1/senti.proto the Python stubs into the client distribution (client/v1 = senti.v1)
and the OpenAPI document of the HTTP/JSON API (server/http/openapi.json, served at /openapi.json)."""
import shutil
import sys
import tempfile
from pathlib import Path

import google.rpc.status_pb2
import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

if __package__:  # imported as protos.generate (the tests)
    from . import openapi
else:  # run as a script: protos/ is sys.path[0]
    import openapi

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("senti/v1/senti.proto")  # relative to protos/: the import path is the package path, senti.v1
STUBS = ROOT / "client" / "v1"
GENERATED = ("senti_pb2.py", "senti_pb2.pyi", "senti_pb2_grpc.py")
OPENAPI = ROOT / "server" / "http" / "openapi.json"
# googleapis-common-protos ships google/rpc/status.proto beside its generated module.
GOOGLEAPIS = Path(google.rpc.status_pb2.__file__).resolve().parents[2]
# protoc.main, unlike `python -m grpc_tools.protoc`, does not add the well-known types by itself.
WELL_KNOWN = Path(grpc_tools.__file__).resolve().parent / "_proto"
INCLUDES = (f"-I{ROOT / 'protos'}", f"-I{GOOGLEAPIS}", f"-I{WELL_KNOWN}")


def generate(target: Path = STUBS) -> None:
    """Runs protoc for senti.proto with Python, gRPC and .pyi outputs and writes them into target."""
    with tempfile.TemporaryDirectory() as out:
        args = ["grpc_tools.protoc", *INCLUDES,
                f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}", str(ROOT / "protos" / PROTO)]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            shutil.copyfile(Path(out) / PROTO.parent / name, target / name)


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """senti.proto and everything it imports as descriptors, with source info (the comments)."""
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "senti.binpb"
        args = ["grpc_tools.protoc", *INCLUDES, f"--descriptor_set_out={path}", "--include_imports",
                "--include_source_info", str(ROOT / "protos" / PROTO)]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def generate_openapi(target: Path = OPENAPI) -> None:
    """Writes the OpenAPI document of the HTTP/JSON API (built from the descriptors) to target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(openapi.render(openapi.build(descriptor_set())), encoding="utf-8")


if __name__ == "__main__":
    # python protos/generate.py [STUBS_DIR [OPENAPI_FILE]]
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else STUBS)
    generate_openapi(Path(sys.argv[2]) if len(sys.argv) > 2 else OPENAPI)
