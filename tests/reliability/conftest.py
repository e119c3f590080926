"""Servers for the reliability tests: real servers on port 0 with metrics wired to the batcher, and helpers."""
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from client import SentiClient
from model.engine import Engine
from server.app import Running, start_server
from server.metrics import Metrics
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(bundle: Path, *, warm: bool = True, tracer_provider=None, channel_credentials=None,
            **overrides) -> Iterator[tuple[Running, SentiClient]]:
    """A real server on 127.0.0.1:0 whose metrics see every batch, with a client; stopped on exit."""
    settings = Settings(host="127.0.0.1", port=0, bundle=bundle, metrics_port=-1, **overrides)
    metrics = Metrics()
    engine = Engine.load(settings.bundle_paths(), settings.engine_config(), observer=metrics.observe_batch)
    running = start_server(settings, engine, metrics, tracer_provider=tracer_provider)
    if warm:
        engine.warm_up()
        running.set_serving(True)
    target = f"127.0.0.1:{running.port}"
    channel = (grpc.secure_channel(target, channel_credentials, options=[("grpc.ssl_target_name_override",
                                                                          "localhost")])
               if channel_credentials is not None else grpc.insecure_channel(target))
    client = SentiClient(target, timeout=30, channel=channel)
    try:
        yield running, client
    finally:
        client.close()
        running.stop(0)


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float:
    """The current value of one sample of the server's registry (0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def free_port() -> int:
    """A port free right now (only for a subprocess server that must be told its port up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(bundle: Path, *args: str, env: dict | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m server` as a real subprocess on 127.0.0.1 (port chosen by the server, read from its log),
    yielded once it reports SERVING."""
    cmd = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1",
           "--bundle", str(bundle), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    try:
        port = _read_port(proc)
        proc.log_lines = []  # the rest of the JSON log, read on as the server writes it (a full pipe blocks it)
        reader = threading.Thread(target=lambda: proc.log_lines.extend(proc.stderr), daemon=True)
        reader.start()
        proc.log_reader = reader
        _wait_serving(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _wait_serving(port: int) -> None:
    """Watches grpc.health.v1 until the server reports SERVING (after warm-up)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=120)
        for response in watch:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                return


def _read_port(proc: subprocess.Popen) -> int:
    """Reads JSON log lines until the 'listening' line, which names the bound port."""
    import json
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"server exited with {proc.wait()} before listening")
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "listening":
            return int(entry["port"])
    raise RuntimeError("server did not start listening within 120 s")


@pytest.fixture(scope="module")
def metered(tiny_bundle) -> Iterator[tuple[Running, SentiClient]]:
    """A shared server over the tiny bundle whose metrics see the batcher."""
    with serving(tiny_bundle, max_texts_per_request=8, max_labels_per_request=5, max_chars_per_text=2000,
                 max_stream_in_flight=4) as pair:
        yield pair
