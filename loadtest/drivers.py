"""Load drivers on a grpc.aio channel: one Record per call, closed loop, open loop and one long stream.
`drive_closed_loop` is the closed loop itself, shared with the HTTP driver (httpdrivers.py)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

import grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from . import common


@dataclass
class Record:
    """One answered (or failed) call, times in seconds from the scenario's start."""

    sent: float
    latency: float
    items: int = 1
    code: str = "OK"
    queue_us: int = 0
    inference_us: int = 0
    server_us: int = 0
    batch_size: int = 0
    cache_hits: int = 0


Call = Callable[[senti_pb2_grpc.SentiServiceStub, int, float], Awaitable[Record]]


class Meter(Protocol):
    """Counts resources (the server's CPU, ours) between `start()` and `stop()`: a driver calls them at the
    edges of the window its figures are over, so CPU seconds and the window's seconds cover the same time
    (measure.CpuMeter; not the warm-up, nor the drain of the calls still in flight when the window ends)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def _mark_window(loop: asyncio.AbstractEventLoop, meter: Meter | None, start: float, end: float | None):
    """Schedules meter.start() at loop time `start` and meter.stop() at `end` (None: no fixed end); returns a
    function to call when the driver is done: it stops the meter then if `end` has not come yet (and starts it
    first if `start` has not either, so an empty window counts nothing)."""
    if meter is None:
        return lambda: None
    state = {"started": False, "stopped": False}

    def on_start():
        state["started"] = True
        meter.start()

    def on_stop():
        if not state["started"]:
            started.cancel()
            on_start()
        if not state["stopped"]:
            state["stopped"] = True
            if stopped is not None:
                stopped.cancel()
            meter.stop()

    started = loop.call_at(start, on_start)
    stopped = loop.call_at(end, on_stop) if end is not None else None
    return on_stop


async def answered(rpc: Awaitable, sent: float, senti_metadata: bool = True) -> Record:
    """Awaits one unary call: its latency from `sent`, its status code and (senti calls) the server's metadata."""
    loop = asyncio.get_running_loop()
    try:
        response = await rpc
    except grpc.aio.AioRpcError as error:
        return Record(sent, loop.time() - sent, code=error.code().name)
    record = Record(sent, loop.time() - sent)
    if senti_metadata:
        md = response.metadata
        record.queue_us, record.inference_us, record.server_us = md.queue_us, md.inference_us, md.total_us
        record.batch_size, record.cache_hits = md.batch_size, md.cache_hits
    return record


def predict_call(texts: list[str], timeout: float = 30.0) -> Call:
    """Predict with one text per request, texts taken in order (index wraps)."""
    async def call(stub, index: int, sent: float) -> Record:
        request = pb.PredictRequest(texts=[texts[index % len(texts)]])
        return await answered(stub.Predict(request, timeout=timeout), sent)
    return call


def zeroshot_call(texts: list[str], labels: list[str], timeout: float = 30.0) -> Call:
    """ClassifyZeroShot with one text per request against `labels`, texts taken in order (index wraps)."""
    async def call(stub, index: int, sent: float) -> Record:
        request = pb.ClassifyZeroShotRequest(texts=[texts[index % len(texts)]], labels=labels)
        return await answered(stub.ClassifyZeroShot(request, timeout=timeout), sent)
    return call


def _channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])


async def closed_loop(target: str, call: Call, concurrency: int, seconds: float, warmup: float,
                      max_requests: int, stub_factory=None, meter: Meter | None = None) -> tuple[list[Record], float]:
    """`concurrency` callers each send, wait, send again; calls that finish after `warmup` within `seconds` count.
    The callers share one channel (gRPC multiplexes them on one HTTP/2 connection)."""
    async with _channel(target) as channel:
        stub = (stub_factory or senti_pb2_grpc.SentiServiceStub)(channel)
        return await drive_closed_loop([stub] * concurrency, call, seconds, warmup, max_requests, meter)


async def drive_closed_loop(stubs: list, call: Callable[[object, int, float], Awaitable[Record]], seconds: float,
                            warmup: float, max_requests: int, meter: Meter | None = None) -> tuple[list[Record], float]:
    """The closed loop itself: one caller per entry of `stubs` (each calls `call(stub, index, sent)`, waits, calls
    again) taking request indexes from one counter; the records of calls that finished inside the window
    [warmup, warmup + seconds] from now, their `sent` relative to the window's start, and the window.
    `meter` runs over that same window: from its start to its end (or to the last call, when `max_requests`
    runs out first), not over the warm-up or the calls still finishing after the end."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    start, end = t0 + warmup, t0 + warmup + seconds
    window_done = _mark_window(loop, meter, start, end)
    counter = iter(range(max_requests))
    records: list[Record] = []

    async def worker(stub):
        for index in counter:
            if loop.time() >= end:
                return
            record = await call(stub, index, loop.time())
            # throughput and latency of the calls that finished inside the window (steady state)
            if start <= record.sent + record.latency <= end:
                records.append(record)

    await asyncio.gather(*(worker(stub) for stub in stubs))
    window_done()
    window = min(end, loop.time()) - start
    for r in records:
        r.sent -= start
    return records, max(window, 1e-9)


async def open_loop(target: str, call: Call, rate: float, seconds: float, first_index: int,
                    max_in_flight: int = 4096, meter: Meter | None = None) -> tuple[list[Record], float, int]:
    """Sends at fixed times (constant arrival rate); latency counts from the scheduled time (no coordinated
    omission). Returns records, the elapsed window and the number of sends skipped for the in-flight cap;
    `meter` runs from the first scheduled send until every call is answered."""
    async with _channel(target) as channel:
        stub = senti_pb2_grpc.SentiServiceStub(channel)
        loop = asyncio.get_running_loop()
        offsets = common.arrival_offsets(rate, seconds)
        t0 = loop.time() + 0.05
        window_done = _mark_window(loop, meter, t0, None)
        records: list[Record] = []
        tasks = set()
        skipped = 0

        async def one(index, scheduled):
            records.append(await call(stub, index, scheduled))

        for i, offset in enumerate(offsets):
            scheduled = t0 + offset
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                skipped += 1
                continue
            task = asyncio.create_task(one(first_index + i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        window_done()
        window = max(seconds, max((r.sent + r.latency for r in records), default=t0) - t0)
        for r in records:
            r.sent -= t0
        return records, window, skipped


async def stream_run(target: str, texts: list[str], count: int, timeout: float, window: int = 128,
                     meter: Meter | None = None) -> dict:
    """One PredictStream carrying `count` comments. The feeder keeps at most `window` comments unanswered (as a
    well-behaved producer does; the server holds 64 in flight by default), so the per-item latency measured
    from hand-off to answer is the wait for the model, not the time the item sat in the client's own buffers.
    The server's own per-item time (metadata total_us, from taking the item off the stream) is reported too."""
    async with _channel(target) as channel:
        stub = senti_pb2_grpc.SentiServiceStub(channel)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(window)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        server: list[float] = []
        errors = 0
        batch_sizes: list[int] = []

        async def requests():
            for i in range(count):
                await slots.acquire()
                sent[str(i)] = loop.time()
                yield pb.PredictStreamRequest(id=str(i), text=texts[i % len(texts)])

        t0 = loop.time()
        window_done = _mark_window(loop, meter, t0, None)
        call = stub.PredictStream(requests(), timeout=timeout)
        async for response in call:
            latencies.append(loop.time() - sent[response.id])
            slots.release()
            if response.HasField("error"):
                errors += 1
            else:
                batch_sizes.append(response.metadata.batch_size)
                server.append(response.metadata.total_us / 1e6)
        window_done()
        wall = loop.time() - t0
        return {"comments": count, "answered": len(latencies), "errors": errors, "seconds": round(wall, 2),
                "client_window": window, "comments_per_s": round(len(latencies) / wall, 1),
                "latency_ms": common.summarize(latencies, 1000), "server_item_ms": common.summarize(server, 1000),
                "batch_size_hist": common.histogram(batch_sizes)}
