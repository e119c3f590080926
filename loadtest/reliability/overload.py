"""Overload: open-loop arrivals at a multiple of capacity for a bounded time.

    .venv/bin/python -m loadtest.reliability.overload --seconds 30 --factor 5
    .venv/bin/python -m loadtest.reliability.overload --seconds 30 --factor 5 --throttle   # SDK callers

Reports: how fast the excess is refused (RESOURCE_EXHAUSTED latency), the accepted calls' p50/p99 against the
queue-wait bound (--max-queue-wait-ms, default 1000), goodput (answered OK per second) against the capacity
measured in the same run, health checks during the overload (all must be SERVING) and server RSS before, during
and after (memory must not grow with the excess). Exit 1 when health failed, an answer was neither OK nor
RESOURCE_EXHAUSTED, or RSS grew more than 5%. `--throttle` gives the callers the SDK's AdaptiveThrottle
(`SentiClient(throttle=AdaptiveThrottle())`): the calls it sheds are counted as SHED_BY_CLIENT, never sent.
Targets only 127.0.0.1.
"""
import argparse
import json
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..rss import rss_mb
from senti.client import AdaptiveThrottle

from .common import SHED, Outcomes, capacity, cpu_seconds, open_loop, server, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the overload (capped at 300)")
    parser.add_argument("--factor", type=float, default=5.0, help="arrival rate as a multiple of capacity")
    parser.add_argument("--capacity", type=float, default=0.0, help="requests/s; 0 = measure it first")
    parser.add_argument("--bundle", default="bundles/e5-small")
    parser.add_argument("--max-queue-wait-ms", type=float, default=1000.0, help="the server's queue-wait bound")
    parser.add_argument("--throttle", action="store_true", help="callers shed load with the SDK's AdaptiveThrottle")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    seconds = min(args.seconds, 300.0)
    with server("--max-queue-wait-ms", str(args.max_queue_wait_ms), bundle=args.bundle) as (proc, port):
        cap = args.capacity or capacity(port)
        rss_before = rss_mb(proc.pid)
        health_codes: dict[str, int] = {}
        health_latency: list[float] = []
        stop = threading.Event()
        rss_peak = [rss_before]

        def watch() -> None:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.wait(0.5):
                t0 = time.monotonic()
                try:
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status)
                except grpc.RpcError as error:
                    status = error.code().name
                health_latency.append(time.monotonic() - t0)
                health_codes[status] = health_codes.get(status, 0) + 1
                rss_peak[0] = max(rss_peak[0], rss_mb(proc.pid))
            channel.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        outcomes = Outcomes()
        cpu_before = cpu_seconds(proc.pid), cpu_seconds()
        throttle = AdaptiveThrottle() if args.throttle else None
        sent = open_loop(port, args.factor * cap, seconds, outcomes, throttle=throttle)
        cpu_after = cpu_seconds(proc.pid), cpu_seconds()
        stop.set()
        watcher.join()
        rss_after = rss_mb(proc.pid)
        # Memory after the excess is gone: one more short round at capacity must not grow it either.
        second = Outcomes()
        open_loop(port, 0.5 * cap, min(10.0, seconds), second)
        rss_final = rss_mb(proc.pid)
    by_code = summary(outcomes)
    report = {"test": "overload", "throttle": args.throttle, "seconds": seconds, "capacity_rps": round(cap, 1),
              "rate_rps": round(args.factor * cap, 1), "sent": sent, "answered": outcomes.count(),
              "by_code": by_code, "health": health_codes,
              "goodput_rps": round(outcomes.count("OK") / seconds, 1),
              "goodput_ratio": round(outcomes.count("OK") / seconds / cap, 3),
              "max_queue_wait_ms": args.max_queue_wait_ms,
              # where the two cores went: the server's CPU, and the load generator's (it shares the machine)
              "server_cpu_s": round(cpu_after[0] - cpu_before[0], 1),
              "generator_cpu_s": round(cpu_after[1] - cpu_before[1], 1),
              "health_p99_ms": round(sorted(health_latency)[int(0.99 * (len(health_latency) - 1))] * 1e3, 2)
              if health_latency else None,
              "rss_mb_before": round(rss_before, 1), "rss_mb_peak": round(rss_peak[0], 1),
              "rss_mb_after": round(rss_after, 1), "rss_mb_after_recovery": round(rss_final, 1),
              "after_recovery": summary(second)}
    text = json.dumps(report)
    print(text)
    if args.out:
        open(args.out, "w").write(text + "\n")
    ok = (set(health_codes) == {"SERVING"} and set(by_code) <= {"OK", "RESOURCE_EXHAUSTED", SHED}
          and rss_final <= 1.05 * rss_before)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
