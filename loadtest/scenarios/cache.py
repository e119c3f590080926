"""`cache`: the result cache off vs on at the corpus's own repeat rate, closed loop at concurrency 32."""
from __future__ import annotations

from .. import common
from ..context import Bench
from ..drivers import closed_loop, predict_call
from ..measure import measured, result_of
from ..settings import SEED, log
from ..spawn import start_server


def run(bench: Bench) -> None:
    rate = bench.args.repeat_rate
    if rate is None:  # the corpus's own: share of lines that repeat an earlier one
        rate = common.repeat_fraction(bench.raw_lines)
    n = 4000 if bench.quick else 12000
    workload = common.repeat_workload(bench.texts, n, rate, SEED)
    out = {"repeat_rate": round(rate, 3), "sent_repeat_fraction": round(common.repeat_fraction(workload), 3)}
    for name, size in (("off", "0"), ("on", "10000")):
        server = start_server(f"cache-{name}", bench.bundle, bench.out, ["--cache-size", size])
        try:
            (records, window), cpu, mine = measured(server, lambda meter: closed_loop(
                server.target, predict_call(workload), 32, bench.seconds, 0.0, max_requests=n, meter=meter))
            entry = result_of(records, window, server, cpu, mine)
            entry["hit_rate"] = round(entry["cache_hits"] / max(1, entry["ok"]), 3)
            out[name] = entry
            log(f"cache {name}: {entry['texts_per_s']} texts/s, hit rate {entry['hit_rate']}")
        finally:
            server.stop()
    out["lengths"] = bench.lengths(workload)
    out["speedup"] = round(out["on"]["texts_per_s"] / max(out["off"]["texts_per_s"], 1e-9), 2)
    bench.results["cache"] = out
    bench.save()
