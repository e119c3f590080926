"""One measured run: drive a server while counting its CPU and ours, then sum the records into a result."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import psutil

from . import common
from .drivers import Call, Record, closed_loop
from .report import cores_warning
from .settings import log
from .spawn import Server


def flag_impossible_cores(result: dict, label: str = "") -> None:
    """Logs, and lists under result['warnings'], every CPU figure of `result` (server_cpu_cores,
    client_cpu_cores) above the machine's core count."""
    for key in ("server_cpu_cores", "client_cpu_cores"):
        if key in result:
            warning = cores_warning(f"{label}{key}", result[key])
            if warning:
                log(warning)
                result.setdefault("warnings", []).append(warning)


def result_of(records: list[Record], window: float, server: Server | None, cpu_s: float,
              client_cpu_s: float, offered: float | None = None) -> dict:
    """Throughput, latency percentiles, server-side timing, batch sizes and resources of one run.
    `cpu_s` and `client_cpu_s` must be counted over `window` (measured() with a driver's meter)."""
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
    flag_impossible_cores(out)
    if offered is not None:
        out["offered"] = offered
    if server is not None:
        out["server_rss_mb"] = round(server.rss_mb(), 1)
    return out


class CpuMeter:
    """The server's CPU seconds and this process's between start() and stop() (drivers.Meter): the driver
    calls them at the edges of the window its throughput is over. Unstarted, it counts from its creation;
    unstopped, up to the moment `seconds()` is read."""

    def __init__(self, server_cpu: Callable[[], float], client_cpu: Callable[[], float]):
        self._server_cpu, self._client_cpu = server_cpu, client_cpu
        self._first = self._sample()
        self._last: tuple[float, float] | None = None

    def _sample(self) -> tuple[float, float]:
        return self._server_cpu(), self._client_cpu()

    def start(self) -> None:
        self._first = self._sample()

    def stop(self) -> None:
        self._last = self._sample()

    def seconds(self) -> tuple[float, float]:
        """(server CPU seconds, client CPU seconds) from start to stop."""
        last = self._last or self._sample()
        return last[0] - self._first[0], last[1] - self._first[1]


def measured(server: Server, runner: Callable[[CpuMeter], Awaitable]) -> tuple:
    """Runs a driver coroutine, `runner(meter)`, returning its result with the server's and this process's CPU
    seconds over the driver's own window: the driver starts and stops `meter` at that window's edges, so the
    CPU of the warm-up and of the calls still in flight after the window (at c32 on a slow server, seconds of
    work) is not divided by a window that excludes them."""
    me = psutil.Process()
    meter = CpuMeter(server.cpu_s, lambda: sum(me.cpu_times()[:2]))
    result = asyncio.run(runner(meter))
    cpu, mine = meter.seconds()
    return result, cpu, mine


def closed_loops(name: str, server: Server, entry: dict, make_call: Callable[[], Call], seconds: float,
                 warmup: float, stub_factory=None, concurrencies: tuple[int, ...] = (1, 32)) -> dict[int, int]:
    """Closed loops at each concurrency (1 and 32 unless told) against one server, into entry['c1'], entry['c32']...;
    returns how many requests each sent."""
    sent = {}
    for concurrency in concurrencies:
        (records, window), cpu, mine = measured(server, lambda meter: closed_loop(
            server.target, make_call(), concurrency, seconds, warmup, 200_000, stub_factory=stub_factory,
            meter=meter))
        result = entry[f"c{concurrency}"] = result_of(records, window, server, cpu, mine)
        sent[concurrency] = len(records)
        log(f"{name} c{concurrency}: {result['texts_per_s']} texts/s, p99 {result['latency_ms'].get('p99')} ms")
    entry["peak_rss_mb"] = round(server.peak_rss_mb, 1)
    return sent
