"""The HTTP/JSON driver: Predict over HTTP/1.1 keep-alive connections, closed loop, one Record per call.

It speaks HTTP/1.1 itself on asyncio streams (a request with a Content-Length body; a response with a
Content-Length body, which is what uvicorn sends for JSON) rather than through httpx: on a 2-core machine the
load generator shares the cores with the server, and httpx 0.29's AsyncClient topped out at about 145 calls/s
at concurrency 32 against GET /healthz (about 4 ms of client CPU per call), below the server's Predict rate,
so the HTTP rows would have measured the client. This reader costs about 0.04 ms per call there, grpc.aio about
0.13 ms. Every result records the client's CPU (`client_cpu_cores`), and the `http` scenario measures each
driver's own cost per call against a trivial endpoint (`client_ceiling`).

HTTP/1.1 has one request in flight per connection, so each caller of the closed loop owns one connection
(gRPC's callers share one multiplexed channel); a connection is opened before the window and reused.
"""
from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable

import grpc

from .drivers import Meter, Record, drive_closed_loop

# google.rpc.Status.code (the error body's "code") -> the gRPC status name a gRPC Record carries
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class HttpError(Exception):
    """A response this minimal reader does not handle (no Content-Length, a malformed head)."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection to host:port with a minimal writer and reader. It (re)connects on the
    first request after it was closed: after `Connection: close` from the server, after an error or timeout."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n"

    async def connect(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        """Sends one request (`headers`: extra header lines, each ending in CRLF) and returns (status, body)."""
        await self.connect()
        try:
            head = (f"{method} {path} HTTP/1.1\r\n{self._host_header}{headers}"
                    f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
            self.writer.write(head + body)
            await self.writer.drain()
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status, length, keep = _parse_head(raw)
            data = await self.reader.readexactly(length) if length else b""
        except BaseException:  # a half-read response leaves the connection unusable (timeouts included)
            self.close()
            raise
        if not keep:
            self.close()
        return status, data

    async def __aenter__(self) -> "HttpConnection":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


def _parse_head(raw: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, keep-alive) from a response's status line and headers."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0]!r}")
    status, length, keep = int(parts[1]), None, parts[0] != "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection":
            keep = value.strip().lower() != "close"
        elif name == "transfer-encoding":
            raise HttpError(f"transfer-encoding {value.strip()} is not read by this driver")
    if length is None:
        if status in (204, 304) or 100 <= status < 200:
            return status, 0, keep
        raise HttpError(f"HTTP {status} without Content-Length")
    return status, length, keep


HttpCall = Callable[[HttpConnection, int, float], Awaitable[Record]]


def http_predict_call(texts: list[str], timeout: float = 30.0, path: str = "/v1/predict") -> HttpCall:
    """POST /v1/predict with one text per request, texts taken in order (index wraps), as predict_call sends
    them over gRPC. The deadline travels as `grpc-timeout` (the server reads it as gRPC's), and the client gives
    up after `timeout` too (DEADLINE_EXCEEDED). Server timing comes from the response's proto3 JSON metadata."""
    headers = f"Content-Type: application/json\r\ngrpc-timeout: {max(1, round(timeout * 1000))}m\r\n"

    async def call(connection: HttpConnection, index: int, sent: float) -> Record:
        body = json.dumps({"texts": [texts[index % len(texts)]]}, ensure_ascii=False).encode("utf-8")
        return await http_answered(connection.request("POST", path, body, headers), sent, timeout)
    return call


def http_get_call(path: str = "/healthz", timeout: float = 30.0) -> HttpCall:
    """GET `path` (a trivial endpoint: what the driver itself costs per call), OK when it answers 200."""
    async def call(connection: HttpConnection, index: int, sent: float) -> Record:
        return await http_answered(connection.request("GET", path), sent, timeout, senti_metadata=False)
    return call


async def http_answered(request: Awaitable[tuple[int, bytes]], sent: float, timeout: float,
                        senti_metadata: bool = True) -> Record:
    """Awaits one HTTP call: its latency from `sent`, its status as the gRPC code name (from the
    google.rpc.Status body of an error, HTTP_<status> when there is none) and the server's metadata."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            status, body = await request
    except TimeoutError:
        return Record(sent, loop.time() - sent, code="DEADLINE_EXCEEDED")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError):
        return Record(sent, loop.time() - sent, code="UNAVAILABLE")
    record = Record(sent, loop.time() - sent)
    if status != 200:
        record.code = _error_code(status, body)
    elif senti_metadata:
        md = json.loads(body).get("metadata") or {}
        # proto3 JSON: camelCase names, 64-bit integers as strings, fields with default values present
        record.queue_us, record.inference_us = int(md.get("queueUs", 0)), int(md.get("inferenceUs", 0))
        record.server_us = int(md.get("totalUs", 0))
        record.batch_size, record.cache_hits = int(md.get("batchSize", 0)), int(md.get("cacheHits", 0))
    return record


def _error_code(status: int, body: bytes) -> str:
    try:
        return _CODE_NAMES[int(json.loads(body)["code"])]
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{status}"


async def http_closed_loop(host: str, port: int, call: HttpCall, concurrency: int, seconds: float, warmup: float,
                           max_requests: int, meter: Meter | None = None) -> tuple[list[Record], float]:
    """closed_loop over HTTP: `concurrency` callers, each on its own keep-alive connection (opened first), the
    same window rules (calls that finish after `warmup` within `seconds` count)."""
    connections = [HttpConnection(host, port) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(c.connect() for c in connections))
        return await drive_closed_loop(connections, call, seconds, warmup, max_requests, meter)
    finally:
        for c in connections:
            c.close()
