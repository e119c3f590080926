"""Soak: open-loop load at a fraction of measured capacity for a bounded time; errors and server RSS drift.

    .venv/bin/python -m loadtest.reliability.soak --minutes 10 --fraction 0.7   # the run in the closing note
    .venv/bin/python -m loadtest.reliability.soak --minutes 0.5                 # a quick check

Prints one JSON object: capacity, rate, counts by status, latency percentiles, RSS samples and drift (from the
sample at 10% of the run, after warm-up and cache fill, to the last one). Targets only 127.0.0.1.
"""
import argparse
import json
import threading
import time

from ..rss import rss_mb
from .common import Outcomes, capacity, open_loop, server, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the load (capped at 30)")
    parser.add_argument("--fraction", type=float, default=0.7, help="arrival rate as a fraction of capacity")
    parser.add_argument("--capacity", type=float, default=0.0, help="requests/s; 0 = measure it first")
    parser.add_argument("--bundle", default="bundles/e5-small")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()
    seconds = min(args.minutes, 30.0) * 60
    with server(bundle=args.bundle) as (proc, port):
        cap = args.capacity or capacity(port)
        rate = args.fraction * cap
        rss = [(0.0, rss_mb(proc.pid))]
        outcomes = Outcomes()
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.wait(max(1.0, seconds / 60)):
                rss.append((round(time.monotonic() - started, 1), rss_mb(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent = open_loop(port, rate, seconds, outcomes)
        stop.set()
        rss.append((round(time.monotonic() - started, 1), rss_mb(proc.pid)))
    base = next((mb for t, mb in rss if t >= 0.1 * seconds), rss[-1][1])
    errors = sent - outcomes.count("OK")
    report = {"test": "soak", "seconds": seconds, "capacity_rps": round(cap, 1), "rate_rps": round(rate, 1),
              "sent": sent, "answered": outcomes.count(), "errors": errors, "by_code": summary(outcomes),
              "rss_mb_start": rss[0][1], "rss_mb_base": base, "rss_mb_end": rss[-1][1],
              "rss_drift_pct": round(100 * (rss[-1][1] - base) / base, 2),
              "rss_samples": rss}
    text = json.dumps(report)
    print(text)
    if args.out:
        open(args.out, "w").write(text + "\n")
    return 0 if errors == 0 and abs(report["rss_drift_pct"]) < 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
