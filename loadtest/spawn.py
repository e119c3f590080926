"""Server subprocesses under measurement: spawn `senti.server`, wait until it serves, sample its CPU and RSS."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import grpc
import psutil

from .rss import rss_mb
from .settings import ROOT, log

T = TypeVar("T")


@dataclass
class Server:
    """A server subprocess on 127.0.0.1, with its readiness time and a resource sampler."""

    name: str
    proc: subprocess.Popen
    port: int
    ready_s: float
    log_path: Path
    process_group: bool = False
    http_port: int | None = None  # senti's HTTP/JSON port; None when it serves none
    ps: psutil.Process = field(init=False)
    peak_rss_mb: float = 0.0

    def __post_init__(self):
        self.ps = psutil.Process(self.proc.pid)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        """The server and its worker processes, each once. Listing the workers may fail (one exiting): the
        server itself still counts, so a CPU delta never jumps by all the CPU it has used since it started."""
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return [self.ps]

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes (MLServer has some)."""
        total = 0.0
        for p in self._tree():
            try:
                total += rss_mb(p.pid)
            except OSError:  # exited since the listing
                pass
        return total

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server and its workers have used: each process's own time only
        (psutil's children_* fields, time of reaped children, would count a worker twice)."""
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            if self.process_group:  # our own session: the server and the workers it spawned
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                if self.process_group:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)


def poll_until(proc: subprocess.Popen, deadline: float, probe: Callable[[], T], failure: Callable[[], str],
               interval: float) -> T:
    """Calls `probe` every `interval` seconds until it returns something truthy (an RPC error counts as not
    yet) and returns that; kills `proc` and raises RuntimeError(failure()) if it exits or the deadline passes."""
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(failure())
        try:
            value = probe()
            if value:
                return value
        except grpc.RpcError:
            pass
        time.sleep(interval)


def listening_ports(log_path: Path) -> tuple[int, int | None] | None:
    """(gRPC port, HTTP port or None) from the server log's listening line: JSON ({"msg": "listening", "port": N,
    "http_port": M or null}) or text ("listening on HOST:PORT", no HTTP port); None before that line."""
    text = log_path.read_text(errors="replace")
    for line in text.splitlines():
        if '"msg": "listening"' in line:
            try:
                entry = json.loads(line[line.index("{"):])
            except ValueError:
                continue
            http_port = entry.get("http_port")
            return int(entry["port"]), (int(http_port) if http_port is not None else None)
    match = re.search(r"listening on \S+:(\d+)", text)
    return (int(match.group(1)), None) if match else None


def start_server(name: str, bundle: Path, out_dir: Path, args: list[str], timeout: float = 120) -> Server:
    """Spawns `python -m senti.server` on 127.0.0.1:0, HTTP on a free port too (`args` may say `--http-port -1`:
    the last flag wins); ready when health says SERVING (time from spawn)."""
    log_path = out_dir / f"server-{name}.log"
    command = [sys.executable, "-m", "senti.server", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", "0",
               "--http-port", "0", "--log-level", "INFO", "--metrics-port", "0", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(log_path, "wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = started + timeout
    port, http_port = poll_until(
        proc, deadline, lambda: listening_ports(log_path),
        lambda: f"server {name} did not start; see {log_path}:\n{log_path.read_text()[-2000:]}", 0.02)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        poll_until(proc, deadline, lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                   == health_pb2.HealthCheckResponse.SERVING,
                   lambda: f"server {name} never became SERVING; see {log_path}", 0.02)
    ready = time.monotonic() - started
    http = f", HTTP on :{http_port}" if http_port is not None else ", no HTTP"
    log(f"server {name} ({' '.join(args) or 'defaults'}) SERVING on :{port}{http} after {ready:.2f} s")
    return Server(name, proc, port, ready, log_path, http_port=http_port)
