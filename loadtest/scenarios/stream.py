"""`stream`: one PredictStream feeding N comments; comments/s and per-item latency."""
from __future__ import annotations

from .. import common
from ..context import Bench
from ..drivers import stream_run
from ..measure import flag_impossible_cores, measured
from ..settings import log
from ..spawn import start_server


def run(bench: Bench) -> None:
    count = bench.args.stream_items or (2000 if bench.quick else 10_000)
    server = start_server("stream", bench.bundle, bench.out, ["--cache-size", "0"])
    try:
        texts = bench.texts
        result, cpu, mine = measured(server, lambda meter: stream_run(server.target, texts, count, timeout=300,
                                                                         meter=meter))
        result.update(server_cpu_cores=round(cpu / result["seconds"], 2),
                      client_cpu_cores=round(mine / result["seconds"], 2), peak_rss_mb=round(server.peak_rss_mb, 1),
                      lengths=bench.lengths(common.take_distinct(texts, 0, min(count, len(texts)))),
                      distinct_texts=min(count, len(texts)))
        flag_impossible_cores(result, "stream ")
        log(f"stream {count}: {result['comments_per_s']} comments/s, p99 {result['latency_ms'].get('p99')} ms")
    finally:
        server.stop()
    bench.results["stream"] = result
    bench.save()
