"""`modes`: senti-server in batched, per-thread and lock modes and the seed design, closed loop at c1 and c32 (batched
with and without its solo session also at c8: the solo session must speed up a lone request and cost nothing under
load)."""
from __future__ import annotations

import os

from .. import common
from ..context import Bench
from ..drivers import predict_call
from ..measure import closed_loops
from ..spawn import start_server
from .engine import paired_batch1, paired_ceiling


def run(bench: Bench) -> None:
    configs = [("batched", []), ("batched-no-solo", ["--solo-threads", "1"]), ("per-thread", ["--mode", "per-thread"]),
               ("lock", ["--mode", "lock"]), ("seed", ["--mode", "lock", "--pad-to-max-length"])]
    if not bench.quick:  # a candidate default: each batch worker's session may use every core
        configs.insert(1, ("batched-2x2", ["--intra-op-threads", str(os.cpu_count() or 1)]))
    out = {}
    for name, extra in configs:
        paired = paired_ceiling(bench, name) if bench.args.paired else None
        batch1 = paired_batch1(bench, name) if bench.args.paired and name == "batched" else None
        server = start_server(name, bench.bundle, bench.out, ["--cache-size", "0", *extra])
        try:
            entry = {"paired_ceiling": paired, "args": extra, "ready_s": round(server.ready_s, 2), "rss_idle_mb": round(server.rss_mb(), 1),
                     "load_avg_before": os.getloadavg()[0]}
            if batch1 is not None:
                entry["paired_batch1_p50_ms"] = batch1
            sent = closed_loops(name, server, entry, lambda: predict_call(bench.texts, timeout=120),
                                bench.seconds, bench.warmup,
                                concurrencies=(1, 8, 32) if name.startswith("batched") else (1, 32))
            for concurrency, count in sent.items():
                entry[f"c{concurrency}"]["lengths"] = bench.lengths(
                    common.take_distinct(bench.texts, 0, min(len(bench.texts), max(1, count))))
        finally:
            server.stop()
        out[name] = entry
        bench.results["modes"] = out
        bench.save()
