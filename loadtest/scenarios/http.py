"""`http`: Predict over HTTP/JSON vs gRPC against one server, and whether serving HTTP slows gRPC (A/B).

compare: one server (HTTP on, as by default); gRPC Predict and HTTP POST /v1/predict, closed loop at concurrency 1
and 32, one text per request, the same texts from the same start and the same windows. The two protocols take
turns going first (round 1: c1 gRPC, HTTP; c32 HTTP, gRPC; round 2 the other way round), so neither always
runs on the warmer or the quieter machine; each figure sums its rounds. Ratios are HTTP / gRPC. Before it, each
driver's own ceiling on a trivial endpoint (gRPC Health.Check, HTTP GET /healthz) at c32, so the client's cost
per call can be read next to the server's.

ab: gRPC Predict c32 on a server started with `--http-port -1` (off) vs the default server (HTTP on, idle),
a fresh server per leg, interleaved off, on, off, on; the ratio is on / off over both legs of each, and per
adjacent pair (legs 2/1 and 4/3). Each leg's idle RSS (after warm-up, before any call) is what HTTP holds.
"""
from __future__ import annotations

import os
from statistics import mean

from grpc_health.v1 import health_pb2, health_pb2_grpc

from .. import common
from ..context import Bench
from ..drivers import answered, closed_loop, predict_call
from ..httpdrivers import http_closed_loop, http_get_call, http_predict_call
from ..measure import measured, result_of
from ..settings import log
from ..spawn import Server, start_server
from .engine import paired_ceiling

PROTOCOLS = ("grpc", "http")
LABELS = {"grpc": "gRPC", "http": "HTTP"}
MAX_REQUESTS = 200_000
TIMEOUT_S = 120.0  # as the modes scenario's Predict calls


def _predict_loop(server: Server, protocol: str, texts: list[str], concurrency: int, seconds: float, warmup: float,
                  meter=None):
    """The closed-loop coroutine of one protocol's Predict driver against `server`."""
    if protocol == "grpc":
        return closed_loop(server.target, predict_call(texts, timeout=TIMEOUT_S), concurrency, seconds, warmup,
                           MAX_REQUESTS, meter=meter)
    return http_closed_loop("127.0.0.1", server.http_port, http_predict_call(texts, timeout=TIMEOUT_S), concurrency,
                            seconds, warmup, MAX_REQUESTS, meter=meter)


def _health_call(stub, index: int, sent: float):
    return answered(stub.Check(health_pb2.HealthCheckRequest(), timeout=30), sent, senti_metadata=False)


def _merged(parts: list[tuple[list, float, float, float]], server: Server | None) -> dict:
    """One result from several runs of the same configuration: records pooled, windows and CPU summed."""
    records = [r for part in parts for r in part[0]]
    result = result_of(records, sum(p[1] for p in parts), server, sum(p[2] for p in parts), sum(p[3] for p in parts))
    result["runs_texts_per_s"] = [round(sum(r.items for r in p[0] if r.code == "OK") / p[1], 1) for p in parts]
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def client_ceiling(server: Server, seconds: float) -> dict:
    """Each driver at c32 against a trivial endpoint of the same server: calls/s and the client's CPU per call."""
    out = {}
    loops = {"grpc": lambda meter: closed_loop(server.target, _health_call, 32, seconds, 0.0, MAX_REQUESTS,
                                               stub_factory=health_pb2_grpc.HealthStub, meter=meter),
             "http": lambda meter: http_closed_loop("127.0.0.1", server.http_port, http_get_call("/healthz"), 32,
                                                    seconds, 0.0, MAX_REQUESTS, meter=meter)}
    for protocol, loop in loops.items():
        (records, window), cpu, mine = measured(server, loop)
        result = result_of(records, window, None, cpu, mine)
        ceiling = {"endpoint": "grpc.health.v1.Health/Check" if protocol == "grpc" else "GET /healthz",
                   "calls_per_s": result["texts_per_s"], "errors": result["errors"],
                   "latency_ms": result["latency_ms"], "client_cpu_cores": result["client_cpu_cores"],
                   "server_cpu_cores": result["server_cpu_cores"],
                   "client_cpu_ms_per_call": round(1000 * mine / max(1, result["ok"]), 3)}
        out[protocol] = ceiling
        log(f"http: {LABELS[protocol]} driver ceiling ({ceiling['endpoint']}, c32): {ceiling['calls_per_s']} calls/s, "
            f"client {ceiling['client_cpu_ms_per_call']} ms CPU per call")
    return out


def compare(bench: Bench, rounds: int) -> dict:
    """gRPC vs HTTP Predict on one server at c1 and c32, turns alternating."""
    paired = paired_ceiling(bench, "http") if bench.args.paired else None
    server = start_server("http", bench.bundle, bench.out, ["--cache-size", "0"])
    try:
        if server.http_port is None:
            raise RuntimeError(f"server http serves no HTTP; see {server.log_path}")
        entry = {"paired_ceiling": paired, "ready_s": round(server.ready_s, 2),
                 "rss_idle_mb": round(server.rss_mb(), 1), "load_avg_before": os.getloadavg()[0], "rounds": rounds,
                 "seconds_per_run": bench.seconds,
                 "client_ceiling": client_ceiling(server, min(bench.seconds, 3.0)), "order": []}
        parts: dict[tuple[str, int], list] = {(p, c): [] for p in PROTOCOLS for c in (1, 32)}
        for round_ in range(rounds):
            for i, concurrency in enumerate((1, 32)):
                for protocol in (PROTOCOLS if (round_ + i) % 2 == 0 else PROTOCOLS[::-1]):
                    (records, window), cpu, mine = measured(server, lambda meter: _predict_loop(
                        server, protocol, bench.texts, concurrency, bench.seconds, bench.warmup, meter))
                    parts[(protocol, concurrency)].append((records, window, cpu, mine))
                    entry["order"].append(f"{protocol} c{concurrency}")
                    ok = sum(1 for r in records if r.code == "OK")
                    log(f"http: {LABELS[protocol]} Predict c{concurrency} (round {round_ + 1}): "
                        f"{round(ok / window, 1)} texts/s, errors {len(records) - ok}")
        for protocol in PROTOCOLS:
            entry[protocol] = {f"c{c}": _merged(parts[(protocol, c)], server) for c in (1, 32)}
        entry["lengths"] = {}
        for c in (1, 32):  # both protocols sent the same texts from index 0; the longer of the runs covers both
            sent = max(len(p[0]) for protocol in PROTOCOLS for p in parts[(protocol, c)])
            count = min(len(bench.texts), max(1, sent))
            entry["lengths"][f"c{c}"] = bench.lengths(common.take_distinct(bench.texts, 0, count))
        entry["ratio"] = {}
        for c in ("c1", "c32"):
            grpc_run, http_run = entry["grpc"][c], entry["http"][c]
            entry["ratio"][c] = {"texts_per_s": _ratio(http_run["texts_per_s"], grpc_run["texts_per_s"]),
                                 "p50": _ratio(http_run["latency_ms"].get("p50"), grpc_run["latency_ms"].get("p50"))}
            log(f"http: {c} HTTP / gRPC = {entry['ratio'][c]['texts_per_s']} texts/s "
                f"({http_run['texts_per_s']} / {grpc_run['texts_per_s']}), p50 {http_run['latency_ms'].get('p50')} "
                f"vs {grpc_run['latency_ms'].get('p50')} ms")
        entry["peak_rss_mb"] = round(server.peak_rss_mb, 1)
    finally:
        server.stop()
    return entry


def ab(bench: Bench) -> dict:
    """gRPC Predict c32 with HTTP off vs on (idle), a fresh server per leg, off, on, off, on."""
    arms = {"off": ["--http-port", "-1"], "on": []}
    parts: dict[str, list] = {name: [] for name in arms}
    legs = []
    for leg, name in enumerate(("off", "on", "off", "on"), 1):
        server = start_server(f"http-ab-{leg}-{name}", bench.bundle, bench.out, ["--cache-size", "0", *arms[name]])
        try:
            if (server.http_port is None) != (name == "off"):
                raise RuntimeError(f"A/B leg {leg}: HTTP {name} expected, listening line says http_port "
                                   f"{server.http_port}; see {server.log_path}")
            rss_idle = round(server.rss_mb(), 1)  # after warm-up, before any call: what serving HTTP holds
            (records, window), cpu, mine = measured(server, lambda meter: _predict_loop(
                server, "grpc", bench.texts, 32, bench.seconds, bench.warmup, meter))
            parts[name].append((records, window, cpu, mine))
            ok = sum(1 for r in records if r.code == "OK")
            leg_entry = {"leg": leg, "http": name, "texts_per_s": round(ok / window, 1),
                         "ready_s": round(server.ready_s, 2), "rss_idle_mb": rss_idle,
                         "peak_rss_mb": round(server.peak_rss_mb, 1)}
            legs.append(leg_entry)
            log(f"http A/B leg {leg} (HTTP {name}): gRPC Predict c32 {leg_entry['texts_per_s']} texts/s")
        finally:
            server.stop()
    out = {"concurrency": 32, "seconds_per_leg": bench.seconds, "order": [leg["http"] for leg in legs], "legs": legs}
    for name in arms:
        result = _merged(parts[name], None)
        mine = [leg for leg in legs if leg["http"] == name]
        result["peak_rss_mb"] = max(leg["peak_rss_mb"] for leg in mine)
        result["rss_idle_mb"] = round(mean(leg["rss_idle_mb"] for leg in mine), 1)
        result["ready_s"] = round(mean(leg["ready_s"] for leg in mine), 2)
        rates = result["runs_texts_per_s"]
        result["spread"] = round((max(rates) - min(rates)) / max(mean(rates), 1e-9), 3)
        out[name] = result
    out["ratio_on_off"] = {"texts_per_s": _ratio(out["on"]["texts_per_s"], out["off"]["texts_per_s"]),
                           "p50": _ratio(out["on"]["latency_ms"].get("p50"), out["off"]["latency_ms"].get("p50")),
                           # each on leg against the off leg just before it: noise shows as disagreement
                           "pairs": [_ratio(on["texts_per_s"], off["texts_per_s"])
                                     for off, on in zip(legs[0::2], legs[1::2])]}
    log(f"http A/B: gRPC c32 with HTTP on / off = {out['ratio_on_off']['texts_per_s']} texts/s "
        f"({out['on']['texts_per_s']} / {out['off']['texts_per_s']})")
    return out


def run(bench: Bench) -> None:
    rounds = 1 if bench.quick else 2
    bench.results["http"] = {"compare": compare(bench, rounds)}
    bench.save()
    bench.results["http"]["ab"] = ab(bench)
    bench.save()
