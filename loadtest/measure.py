"""One measured run: drive a server while counting its CPU and ours, then sum the records into a result."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import psutil

from . import common
from .drivers import Call, Record, closed_loop
from .settings import log
from .spawn import Server


def result_of(records: list[Record], window: float, server: Server | None, cpu_s: float,
              client_cpu_s: float, offered: float | None = None) -> dict:
    """Throughput, latency percentiles, server-side timing, batch sizes and resources of one run."""
    ok = [r for r in records if r.code == "OK"]
    errors: dict[str, int] = {}
    for r in records:
        if r.code != "OK":
            errors[r.code] = errors.get(r.code, 0) + 1
    latency = common.summarize([r.latency for r in ok], 1000)
    out = {
        "requests": len(records), "ok": len(ok), "errors": errors, "seconds": round(window, 2),
        "texts_per_s": round(sum(r.items for r in ok) / window, 1),
        "latency_ms": latency,
        "queue_ms": common.summarize([r.queue_us / 1000 for r in ok]),
        "inference_ms": common.summarize([r.inference_us / 1000 for r in ok]),
        "server_ms": common.summarize([r.server_us / 1000 for r in ok]),
        "batch_size_hist": common.histogram(r.batch_size for r in ok),
        "cache_hits": sum(r.cache_hits for r in ok),
        "server_cpu_cores": round(cpu_s / window, 2),
        "client_cpu_cores": round(client_cpu_s / window, 2),
    }
    if offered is not None:
        out["offered"] = offered
    if server is not None:
        out["server_rss_mb"] = round(server.rss_mb(), 1)
    return out


def measured(server: Server, runner: Callable[[], Awaitable]) -> tuple:
    """Runs a driver coroutine, returning its result with the server's and this process's CPU seconds."""
    me = psutil.Process()
    cpu0, mine0 = server.cpu_s(), sum(me.cpu_times()[:2])
    result = asyncio.run(runner())
    return result, server.cpu_s() - cpu0, sum(me.cpu_times()[:2]) - mine0


def closed_loops(name: str, server: Server, entry: dict, make_call: Callable[[], Call], seconds: float,
                 warmup: float, stub_factory=None) -> dict[int, int]:
    """Closed loops at concurrency 1 and 32 against one server, into entry['c1'] and entry['c32'];
    returns how many requests each sent."""
    sent = {}
    for concurrency in (1, 32):
        (records, window), cpu, mine = measured(server, lambda: closed_loop(
            server.target, make_call(), concurrency, seconds, warmup, 200_000, stub_factory=stub_factory))
        result = entry[f"c{concurrency}"] = result_of(records, window, server, cpu, mine)
        sent[concurrency] = len(records)
        log(f"{name} c{concurrency}: {result['texts_per_s']} texts/s, p99 {result['latency_ms'].get('p99')} ms")
    entry["peak_rss_mb"] = round(server.peak_rss_mb, 1)
    return sent
