"""`sweep`: Predict at constant arrival rates up to saturation (batched mode); max rate within a p99 bound."""
from __future__ import annotations

import time

from .. import common
from ..context import Bench
from ..drivers import open_loop, predict_call
from ..measure import measured, result_of
from ..settings import log
from ..spawn import start_server
from .engine import ceiling, paired_ceiling

SWEEP_FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.8, 0.87, 0.93, 1.0, 1.1, 1.25)


def run(bench: Bench) -> None:
    top = ceiling(bench)
    fractions = (0.25, 0.6, 0.87, 1.0, 1.15) if bench.quick else SWEEP_FRACTIONS
    rates = [round(f * top) for f in fractions]
    seconds = 3.0 if bench.quick else 8.0
    paired = paired_ceiling(bench, "sweep") if bench.args.paired else None
    server = start_server("sweep", bench.bundle, bench.out, ["--cache-size", "0"])
    steps = []
    first = 0
    try:
        steps_left = 16
        while rates and steps_left:
            rate = rates.pop(0)
            steps_left -= 1
            call = predict_call(bench.texts, timeout=5.0)
            (records, window, skipped), cpu, mine = measured(
                server, lambda meter: open_loop(server.target, call, rate, seconds, first, meter=meter))
            step = result_of(records, window, server, cpu, mine, offered=rate)
            step.update(achieved=step["texts_per_s"], p99_ms=step["latency_ms"].get("p99", float("inf")),
                        errors=sum(step["errors"].values()) + skipped, skipped=skipped)
            steps.append(step)
            first += len(records)
            log(f"sweep {rate}/s: achieved {step['achieved']}, p50 {step['latency_ms'].get('p50')} "
                f"p99 {step['p99_ms']} ms, errors {step['errors']}")
            time.sleep(1.0)  # let the queue drain
            if step["achieved"] < 0.85 * rate or step["p99_ms"] > 3000:
                break  # saturated: the next step would only grow the queue
            if not rates:  # not saturated yet (the machine got quieter than at the ceiling's measurement)
                rates.append(round(rate * 1.12))
        bench.results["sweep"] = {
            "mode": "batched", "arrivals": "constant", "seconds_per_step": seconds, "ceiling": top,
            "paired_ceiling": paired,
            "steps": steps, "lengths": bench.lengths(common.take_distinct(bench.texts, 0, min(first, len(bench.texts)))),
            "max_rate_p99_100ms": common.max_rate_within(steps, 100),
            "max_rate_p99_500ms": common.max_rate_within(steps, 500),
            "ready_s": round(server.ready_s, 2), "peak_rss_mb": round(server.peak_rss_mb, 1)}
    finally:
        server.stop()
    bench.save()
