"""`senti-server` as a real subprocess on 127.0.0.1, for tests and measurement scripts alike."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .settings import ROOT

START_TIMEOUT_S = 180


@contextmanager
def server_process(bundle: Path | str, *args: str, env: dict | None = None,
                   root: Path = ROOT) -> Iterator[tuple[subprocess.Popen, int]]:
    """Starts `python -m senti.server` from the checkout `root` on port 0; yields (process, port) once health says SERVING.

    The port is read from the JSON log's `listening` line (kept as `process.listening`: it names the HTTP and
    metrics ports too; pass "--metrics-port", "0" to have one); the rest of the log is collected in
    `process.log_lines` (a full pipe would block the server). On exit a still-running server gets SIGTERM
    (it drains and exits), and is killed if it has not exited within a minute.
    """
    defaults = [] if "--metrics-port" in args else ["--metrics-port", "-1"]
    cmd = [sys.executable, "-m", "senti.server", "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
           *defaults, "--log-format", "json", "--bundle", str(bundle), *args]
    proc = subprocess.Popen(cmd, cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    try:
        proc.listening = _read_listening(proc)
        port = int(proc.listening["port"])
        proc.log_lines = []
        proc.log_reader = threading.Thread(target=lambda: proc.log_lines.extend(proc.stderr), daemon=True)
        proc.log_reader.start()
        _wait_serving(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(timeout=30)


def _read_listening(proc: subprocess.Popen) -> dict:
    """Reads JSON log lines until the 'listening' line, which names the bound ports."""
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"server exited with {proc.wait()} before listening")
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "listening":
            return entry
    raise RuntimeError(f"server did not start listening within {START_TIMEOUT_S} s")


def _wait_serving(port: int) -> None:
    """Watches grpc.health.v1 until the server reports SERVING (after warm-up)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=START_TIMEOUT_S)
        for response in watch:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                return
