"""Peers in the bench: MLServer 1.7.1 serving the same bundle from its own virtual environment."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from .drivers import Record, answered
from .spawn import Server, poll_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def v2_module(venv: Path):
    """MLServer's generated V2 dataplane messages, loaded from its venv (they need only protobuf)."""
    name = "senti_bench_v2_dataplane"
    if name in sys.modules:
        return sys.modules[name]
    path = next(venv.glob("lib/python*/site-packages/mlserver/grpc/dataplane_pb2.py"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class V2Stub:
    """The two V2 calls the bench needs, on a grpc.aio channel."""

    def __init__(self, channel, v2):
        self.ModelInfer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", request_serializer=v2.ModelInferRequest.SerializeToString,
            response_deserializer=v2.ModelInferResponse.FromString)

    @staticmethod
    def factory(v2):
        return lambda channel: V2Stub(channel, v2)


def v2_call(v2, texts: list[str], timeout: float = 120.0):
    """One text per ModelInfer request, texts in order (as the senti Predict driver sends them)."""
    async def call(stub, index: int, sent: float) -> Record:
        text = texts[index % len(texts)].encode("utf-8")
        request = v2.ModelInferRequest(model_name="senti", inputs=[v2.ModelInferRequest.InferInputTensor(
            name="text", datatype="BYTES", shape=[1], contents=v2.InferTensorContents(bytes_contents=[text]))])
        return await answered(stub.ModelInfer(request, timeout=timeout), sent, senti_metadata=False)
    return call


def start_mlserver(name: str, venv: Path, bundle: Path, out: Path, batching: dict, root: Path, log,
                   workers: int = 1, threads: int | None = None):
    """Writes MLServer's settings.json and model-settings.json into out/name and starts `mlserver start` with
    `workers` inference processes (parallel_workers), each session with `threads` intra-op threads (all cores)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    grpc_port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": free_port(), "grpc_port": grpc_port, "metrics_port": free_port(),
        "parallel_workers": workers, "load_models_at_startup": True, "debug": False}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "senti", "implementation": "loadtest.mlserver.runtime.SentiRuntime",
        "parameters": {"uri": str(bundle), "extra": {"threads": threads or os.cpu_count() or 1}}, **batching}))
    log_path = out / f"server-{name}.log"
    # the runtime imports the engine as senti.model, which an install maps onto model/: mirror that mapping
    imports = folder / "pythonpath" / "senti"
    imports.mkdir(parents=True, exist_ok=True)
    if not (imports / "model").exists():
        (imports / "model").symlink_to(root / "model", target_is_directory=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder / "pythonpath"), str(root)]), PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    with open(log_path, "wb") as sink:
        proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(folder)], cwd=root, stdout=sink,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    v2 = v2_module(venv)
    request = v2.ModelReadyRequest(name="senti")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady",
                                    request_serializer=v2.ModelReadyRequest.SerializeToString,
                                    response_deserializer=v2.ModelReadyResponse.FromString)
        poll_until(proc, started + 180, lambda: ready(request, timeout=1).ready,
                   lambda: f"MLServer {name} did not become ready; see {log_path}", 0.1)
    server = Server(name, proc, grpc_port, time.monotonic() - started, log_path, process_group=True)
    log(f"MLServer {name} ({batching or 'no batching'}) ready on :{grpc_port} after {server.ready_s:.2f} s")
    return server
