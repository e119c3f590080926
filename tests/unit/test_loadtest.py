"""The load suite's pure helpers (percentiles, arrival schedules, text sampling, FLOPs, table), its call
records and its import graph. No timing, no server."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest import common


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200), st.floats(0, 100))
def test_percentile_matches_numpy_linear(values, q):
    assert common.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_percentile_edges():
    assert math.isnan(common.percentile([], 50))
    assert common.percentile([3.0], 99) == 3.0
    assert common.percentile([1, 2, 3, 4], 0) == 1
    assert common.percentile([1, 2, 3, 4], 100) == 4
    with pytest.raises(ValueError):
        common.percentile([1], 101)


def test_summarize_scales_and_orders():
    out = common.summarize([0.001, 0.002, 0.003, 0.100], scale=1000)
    assert out["n"] == 4
    assert out["min"] == 1.0 and out["max"] == 100.0
    assert out["p50"] <= out["p90"] <= out["p95"] <= out["p99"] <= out["max"]
    assert common.summarize([]) == {"n": 0}


def test_constant_arrivals_are_evenly_spaced_and_bounded():
    offsets = common.arrival_offsets(200, 2.0)
    assert len(offsets) == 400
    gaps = np.diff(offsets)
    assert np.allclose(gaps, 1 / 200)
    assert offsets[0] == 0 and offsets[-1] < 2.0
    assert common.arrival_offsets(0, 5) == [] and common.arrival_offsets(10, 0) == []


def test_poisson_arrivals_have_the_rate_and_are_seeded():
    offsets = common.arrival_offsets(500, 20.0, kind="poisson", seed=1)
    assert offsets == common.arrival_offsets(500, 20.0, kind="poisson", seed=1)
    assert all(b > a for a, b in zip(offsets, offsets[1:]))
    assert abs(len(offsets) / 20.0 - 500) < 500 * 0.05
    with pytest.raises(ValueError):
        common.arrival_offsets(10, 1, kind="bursty")


def test_dedupe_keeps_first_seen_order():
    assert common.dedupe_texts(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_shuffle_is_seeded_and_a_permutation():
    texts = [str(i) for i in range(100)]
    one, two = common.shuffled(texts, 7), common.shuffled(texts, 7)
    assert one == two and sorted(one) == sorted(texts) and one != texts
    assert common.shuffled(texts, 8) != one


def test_take_distinct_wraps_and_stays_distinct_within_length():
    texts = ["a", "b", "c", "d"]
    assert common.take_distinct(texts, 2, 4) == ["c", "d", "a", "b"]
    assert len(set(common.take_distinct(texts, 1, 4))) == 4
    assert common.take_distinct(texts, 3, 6) == ["d", "a", "b", "c", "d", "a"]
    with pytest.raises(ValueError):
        common.take_distinct([], 0, 1)


def test_repeat_fraction():
    assert common.repeat_fraction([]) == 0.0
    assert common.repeat_fraction(["a", "b", "c"]) == 0.0
    assert common.repeat_fraction(["a", "a", "a", "a"]) == 0.75


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.8])
def test_repeat_workload_hits_the_requested_repeat_rate(rate):
    unique = [f"t{i}" for i in range(50_000)]
    work = common.repeat_workload(unique, 20_000, rate, seed=3)
    assert len(work) == 20_000
    assert abs(common.repeat_fraction(work) - rate) < 0.02
    assert work == common.repeat_workload(unique, 20_000, rate, seed=3)


def test_sample_with_repeats_draws_from_lines():
    lines = ["x", "y", "y", "z"]
    sample = common.sample_with_repeats(lines, 1000, seed=1)
    assert set(sample) <= set(lines) and len(sample) == 1000


def test_corpus_files_are_read_stripped_and_deduplicated(tmp_path):
    (tmp_path / "pos.txt").write_text("好 \n\n很好\n好\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("差\n很好\n", encoding="utf-8")
    assert common.load_corpus(dedupe=False, directory=tmp_path) == ["好", "很好", "好", "差", "很好"]
    assert common.load_corpus(dedupe=True, directory=tmp_path) == ["好", "很好", "差"]


def test_length_stats():
    out = common.length_stats([10, 20, 30, 40, 100])
    assert out["n"] == 5 and out["min"] == 10 and out["max"] == 100 and out["p50"] == 30
    assert out["mean"] == 40.0
    assert common.length_stats([]) == {"n": 0}


def test_encoder_flops_of_e5_small():
    # 12 layers x (4*384^2 + 2*384*1536) MACs per token = 21.2M MACs; plus attention 2*L*384 per layer
    per_token_linear = 12 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert common.encoder_flops(1) == pytest.approx(2 * (per_token_linear + 12 * 2 * 384))
    assert common.encoder_flops(46) == pytest.approx(2 * 46 * (per_token_linear + 12 * 2 * 46 * 384))
    assert common.mean_flops([10, 30]) == pytest.approx((common.encoder_flops(10) + common.encoder_flops(30)) / 2)


def test_max_rate_within_skips_saturated_and_failing_steps():
    steps = [
        {"offered": 50, "achieved": 50, "p99_ms": 20, "errors": 0},
        {"offered": 100, "achieved": 99.5, "p99_ms": 80, "errors": 0},
        {"offered": 150, "achieved": 149, "p99_ms": 300, "errors": 0},
        {"offered": 200, "achieved": 150, "p99_ms": 90, "errors": 0},   # saturated: not counted
        {"offered": 175, "achieved": 175, "p99_ms": 50, "errors": 3},   # errors: not counted
    ]
    assert common.max_rate_within(steps, 100) == 99.5
    assert common.max_rate_within(steps, 500) == 149
    assert common.max_rate_within(steps, 10) == 0.0


def test_histogram_and_table():
    assert common.histogram([3, 1, 3, 2]) == {1: 1, 2: 1, 3: 2}
    table = common.format_table([{"a": "x", "b": 1.234}, {"a": "yy", "b": None}], [("a", "A"), ("b", "B")])
    lines = table.splitlines()
    assert lines[0].startswith("| A") and "1.23" in lines[2] and "-" in lines[3]
    assert len({len(line) for line in lines}) == 1


def test_summary_rows_ratios():
    from loadtest.report import headline, summary_rows
    results = {
        "engine": {"runs": [
            {"variant": "int8", "layout": "2x1", "batching": "grouped 32", "texts_per_s": 300.0,
             "batch_latency_ms": {"p50": 100, "p95": 120, "p99": 130}},
            {"variant": "int8", "layout": "1x2", "batching": "batch 1", "texts_per_s": 180.0,
             "batch_latency_ms": {"p50": 5.0, "p95": 6, "p99": 7}}]},
        "modes": {
            "batched": {"ready_s": 2.0, "peak_rss_mb": 400, "c1": _closed(150, 5.4), "c32": _closed(270, 110)},
            "seed": {"ready_s": 2.0, "peak_rss_mb": 390, "c1": _closed(9, 100), "c32": _closed(9, 3000)}},
    }
    rows = {r["scenario"]: r for r in summary_rows(results)}
    assert rows["server batched c32"]["x_ceiling"] == 0.9
    assert rows["server batched c32"]["x_seed"] == 30.0
    lines = headline(results)
    assert any("90% of the raw ceiling" in line for line in lines)
    assert any("+8%" in line for line in lines)
    json.dumps(rows)
    # the paired reference: raw batch 1 on the same texts right before c1 (a shared machine drifts)
    results["modes"]["batched"]["paired_batch1_p50_ms"] = 4.5
    assert ("c1 latency p50 5.4 ms vs raw batch-1 p50 4.5 ms measured right before it on the same texts: +20% "
            "(goal within +10%)") in headline(results)


def test_summary_and_headline_show_the_solo_ab_and_score_invariance():
    from loadtest.report import headline, summary_rows
    results = {"modes": {
        "batched": {"ready_s": 2.0, "peak_rss_mb": 400, "c1": _closed(120, 7.0), "c8": _closed(200, 40),
                    "c32": _closed(230, 140)},
        "batched-no-solo": {"ready_s": 2.0, "peak_rss_mb": 380, "c1": _closed(100, 9.0), "c8": _closed(200, 40),
                            "c32": _closed(230, 140)}},
        "invariance": {"texts": 1000, "max_abs_score_difference": 5.96e-07, "texts_differing": 765,
                       "alone_largest_batch": 1, "batched_with_others": 981, "mixed_mean_batch": 10.0}}
    rows = [r["scenario"] for r in summary_rows(results)]
    assert "server batched c8" in rows and "server batched-no-solo c8" in rows
    assert "score invariance: max |score difference| 5.96e-07, 1000 texts alone vs at c32" in rows
    lines = headline(results)
    assert "solo session on / off, c1: 1.20x texts/s, p50 7.0 vs 9.0 ms" in lines
    assert any(line.startswith("score invariance: max |score difference| 5.96e-07 over 1000 texts") for line in lines)


def _closed(tps, p50):
    return {"texts_per_s": tps, "latency_ms": {"p50": p50, "p95": p50, "p99": p50}, "server_cpu_cores": 1.0}




def test_answered_records_status_and_senti_metadata():
    import asyncio
    from types import SimpleNamespace

    import grpc

    from loadtest.drivers import answered

    metadata = SimpleNamespace(queue_us=1, inference_us=2, total_us=3, batch_size=4, cache_hits=5)

    async def ok():
        return SimpleNamespace(metadata=metadata)

    async def unavailable():
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")

    async def run():
        sent = asyncio.get_running_loop().time()
        return await answered(ok(), sent), await answered(ok(), sent, senti_metadata=False), \
            await answered(unavailable(), sent)

    senti, peer, failed = asyncio.run(run())
    assert (senti.code, senti.queue_us, senti.inference_us, senti.server_us, senti.batch_size, senti.cache_hits) \
        == ("OK", 1, 2, 3, 4, 5)
    assert peer.code == "OK" and peer.server_us == 0 and peer.batch_size == 0
    assert failed.code == "UNAVAILABLE" and failed.latency >= 0

def test_http_driver_records_ok_calls_and_server_metadata(tiny_bundle):
    """The HTTP driver against a real (tiny) server: OK records with the server's timing from the JSON metadata,
    keep-alive connections reused, errors as gRPC code names (no timing assertions)."""
    import asyncio

    from loadtest.httpdrivers import HttpConnection, http_closed_loop, http_get_call, http_predict_call
    from tests.conftest import running_server

    texts = ["这个手机很好用", "物流太慢了", "质量一般", "还会再买"]

    async def run(port):
        records, window = await http_closed_loop("127.0.0.1", port, http_predict_call(texts, timeout=30), 2,
                                                 seconds=60, warmup=0.0, max_requests=6)
        connection = HttpConnection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        try:
            first = await http_predict_call(texts)(connection, 0, loop.time())
            writer = connection.writer
            health = await http_get_call("/healthz")(connection, 1, loop.time())
            same_connection = connection.writer is writer
            empty = await http_predict_call([""])(connection, 2, loop.time())
            missing = await http_get_call("/v1/nothing-here")(connection, 3, loop.time())
        finally:
            connection.close()
        return records, window, first, health, same_connection, empty, missing

    with running_server(tiny_bundle, http_port=0, cache_size=0) as (running, _client):  # as the bench runs it
        records, window, first, health, same_connection, empty, missing = asyncio.run(run(running.http_port))
    assert len(records) == 6 and window > 0
    for record in [*records, first]:
        assert record.code == "OK" and record.items == 1 and record.latency > 0
        assert record.server_us > 0 and record.inference_us > 0 and record.batch_size >= 1
        assert record.server_us >= record.inference_us and record.cache_hits == 0
    assert health.code == "OK" and health.server_us == 0
    assert same_connection
    assert empty.code == "INVALID_ARGUMENT" and missing.code == "NOT_FOUND"


def test_http_driver_without_a_server_records_unavailable():
    import asyncio
    import socket

    from loadtest.httpdrivers import HttpConnection, http_predict_call

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def run():
        return await http_predict_call(["好"])(HttpConnection("127.0.0.1", port), 0, asyncio.get_running_loop().time())

    assert asyncio.run(run()).code == "UNAVAILABLE"


def test_http_response_head_parsing():
    from loadtest.httpdrivers import HttpError, _parse_head

    assert _parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: application/json\r\n\r\n") \
        == (200, 12, True)
    assert _parse_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nConnection: close\r\n\r\n") \
        == (503, 3, False)
    assert _parse_head(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 0, True)
    for bad in (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n",
                b"SSH-2.0-x\r\n\r\n"):
        with pytest.raises(HttpError):
            _parse_head(bad)


def test_listening_ports_from_the_server_log(tmp_path):
    from loadtest.spawn import listening_ports

    log = tmp_path / "server.log"
    log.write_text('{"ts": "t", "level": "INFO", "msg": "loaded"}\n{"ts": "t", "level": "INFO", "logger": "senti", '
                   '"msg": "listening", "host": "127.0.0.1", "port": 4101, "http_port": 4102, "metrics_port": 4103}\n')
    assert listening_ports(log) == (4101, 4102)
    log.write_text('{"msg": "listening", "host": "127.0.0.1", "port": 4101, "http_port": null}\n')
    assert listening_ports(log) == (4101, None)
    log.write_text('{"msg": "listening", "host": "127.0.0.1", "po')  # half-written: not yet
    assert listening_ports(log) is None
    log.write_text("INFO listening on 127.0.0.1:4101\n")
    assert listening_ports(log) == (4101, None)


def test_summary_rows_and_headline_of_the_http_scenario():
    from loadtest.report import headline, summary_rows

    results = {"http": {
        "compare": {"ready_s": 2.0, "peak_rss_mb": 420, "paired_ceiling": 300.0,
                    "grpc": {"c1": _closed(150, 6.0), "c32": _closed(270, 110)},
                    "http": {"c1": _closed(140, 6.5), "c32": _closed(243, 125)},
                    "ratio": {"c1": {"texts_per_s": 0.933, "p50": 1.083}, "c32": {"texts_per_s": 0.9, "p50": 1.136}}},
        "ab": {"off": {**_closed(270, 110), "ready_s": 1.9, "peak_rss_mb": 380, "spread": 0.02},
               "on": {**_closed(266, 112), "ready_s": 2.1, "peak_rss_mb": 420, "spread": 0.03},
               "legs": [{"http": "off", "texts_per_s": 268}, {"http": "on", "texts_per_s": 265},
                        {"http": "off", "texts_per_s": 272}, {"http": "on", "texts_per_s": 267}],
               "ratio_on_off": {"texts_per_s": 0.985, "p50": 1.02, "pairs": [0.989, 0.982]}}}}
    rows = {r["scenario"]: r for r in summary_rows(results)}
    assert rows["http: HTTP Predict c32 (one server)"]["texts_per_s"] == 243
    assert rows["http: gRPC Predict c1 (one server)"]["x_paired"] == 0.5
    assert rows["http A/B: gRPC Predict c32, HTTP on, idle"]["rss"] == 420
    assert rows["http A/B: gRPC Predict c32, HTTP off"]["ready"] == 1.9
    lines = headline(results)
    assert any("c1 0.93x" in line and "c32 0.90x" in line for line in lines)
    assert any("HTTP on (idle) / off: 0.98x" in line and "pairs 0.99x, 0.98x" in line and "3%" in line
               for line in lines)
    json.dumps(rows)


def _import_graph(package: Path) -> dict[str, set[str]]:
    """A package's modules -> the modules of the package each imports anywhere in its body (lazy imports
    too), read with `ast`, nothing executed. `from pkg import name` counts as pkg.name when that is a module."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    source = ".".join(here[: len(here) - node.level + 1] + ([source] if source else []))
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph` (as a path that ends where it starts), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_finds_a_lazy_relative_cycle(tmp_path):
    """The shape of the old bench <-> peers circle: a top-level import one way, a function-level one back."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "bench.py").write_text("from .sub import peers\nimport json\n")
    (package / "sub" / "peers.py").write_text("def f():\n    from ..bench import Record\n")
    (package / "other.py").write_text("from pkg.sub.peers import f\nfrom . import bench\n")
    graph = _import_graph(package)
    assert graph["pkg.bench"] == {"pkg.sub.peers"}
    assert graph["pkg.sub.peers"] == {"pkg.bench"}
    assert graph["pkg.other"] == {"pkg.sub.peers", "pkg.bench"}
    assert _cycle(graph) == ["pkg.bench", "pkg.sub.peers", "pkg.bench"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_loadtest_imports_have_no_cycle():
    graph = _import_graph(Path(common.__file__).resolve().parent)
    assert "loadtest.drivers" in graph["loadtest.peers"]  # relative imports are seen
    cycle = _cycle(graph)
    assert cycle is None, "import cycle in loadtest: " + " -> ".join(cycle)


# -- CPU accounting and the raw ceiling (issue 16 item 6) --------------------------------------------------------

class _VirtualTimeLoop:
    """An asyncio event loop on a virtual clock: waiting for the next timer jumps the clock to it at once, so
    a driver's timing (warm-up, window, slow calls) plays out exactly and instantly, with no real sleeps."""

    @staticmethod
    def new():
        import asyncio
        import selectors

        class Selector(selectors.DefaultSelector):
            def select(self, timeout=None):
                if timeout:
                    loop.now += timeout
                return super().select(0)

        class Loop(asyncio.SelectorEventLoop):
            now = 1000.0

            def time(self):
                return self.now

        loop = Loop(Selector())
        return loop


def _marking_meter(loop):
    """A list of ("start"|"stop", loop time) marks, and a meter class that appends to it."""
    marks = []

    class Meter:
        def start(self):
            marks.append(("start", loop.time()))

        def stop(self):
            marks.append(("stop", loop.time()))

    return marks, Meter


def _sleeping_call(seconds):
    """A driver call that takes `seconds` of loop time and records its latency."""
    import asyncio

    from loadtest.drivers import Record

    async def call(stub, index, sent):
        await asyncio.sleep(seconds)
        return Record(sent, asyncio.get_running_loop().time() - sent)

    return call


def test_closed_loop_meter_spans_the_window_not_the_warmup_or_the_drain():
    """The cause of "4.19 server cores" on 2 cores: CPU was counted from before the warm-up to after the last
    in-flight call (at c32 with 1 s calls: 0.5 + 4 + ~1 s) and divided by the 4 s window."""
    from loadtest.drivers import drive_closed_loop

    loop = _VirtualTimeLoop.new()
    marks, Meter = _marking_meter(loop)
    call = _sleeping_call(1.0)

    t0 = loop.time()
    records, window = loop.run_until_complete(drive_closed_loop([None] * 32, call, 4.0, 0.5, 200_000, Meter()))
    finished = loop.time()
    loop.close()
    assert window == pytest.approx(4.0)
    assert marks == [("start", pytest.approx(t0 + 0.5)), ("stop", pytest.approx(t0 + 4.5))]
    assert finished - t0 >= 5.0  # the drain the old accounting divided by the window
    # a server busy on 2 cores all along: over the meter's span 2.0 cores; over the whole run > 2.4
    busy = 2.0
    over_window = busy * (marks[1][1] - marks[0][1]) / window
    over_run = busy * (finished - t0) / window
    assert over_window == pytest.approx(2.0)
    assert over_run > 2.4
    assert len(records) == 32 * 4  # the calls finishing at t0 + 1, 2, 3, 4 s: inside the window


def test_closed_loop_meter_stops_when_requests_run_out_and_counts_nothing_before_the_window():
    from loadtest.drivers import drive_closed_loop

    loop = _VirtualTimeLoop.new()
    marks, Meter = _marking_meter(loop)
    call = _sleeping_call(0.25)

    t0 = loop.time()
    # 8 calls of 0.25 s on 2 callers: done after 1 s, well before the 4 s window ends
    _, window = loop.run_until_complete(drive_closed_loop([None] * 2, call, 4.0, 0.0, 8, Meter()))
    assert window == pytest.approx(1.0)
    assert marks == [("start", pytest.approx(t0)), ("stop", pytest.approx(t0 + 1.0))]
    # every call done within the warm-up: the meter starts and stops at once (nothing counted)
    marks.clear()
    t0 = loop.time()
    loop.run_until_complete(drive_closed_loop([None] * 2, call, 4.0, 5.0, 8, Meter()))
    loop.close()
    assert [m[0] for m in marks] == ["start", "stop"] and marks[0][1] == marks[1][1]


def test_measured_counts_cpu_between_the_drivers_marks_only():
    """measured() must return the CPU between meter.start() and meter.stop(), not over the whole coroutine."""
    from types import SimpleNamespace

    from loadtest.measure import measured

    server_cpu = {"s": 100.0}
    server = SimpleNamespace(cpu_s=lambda: server_cpu["s"])

    async def runner(meter):
        server_cpu["s"] += 50.0  # warm-up: not counted
        meter.start()
        server_cpu["s"] += 8.0
        meter.stop()
        server_cpu["s"] += 30.0  # drain after the window: not counted
        return "result"

    result, cpu, mine = measured(server, runner)
    assert result == "result" and cpu == pytest.approx(8.0) and mine >= 0

    async def unmarked(meter):  # a driver without marks: the whole run, as before
        server_cpu["s"] += 5.0
        return None

    assert measured(server, unmarked)[1] == pytest.approx(5.0)


def test_result_of_and_headline_warn_about_cores_above_the_machine():
    import os

    from loadtest.drivers import Record
    from loadtest.measure import cores_warning, result_of
    from loadtest.report import cpu_warnings, headline

    cores = os.cpu_count() or 1
    records = [Record(0.0, 0.01) for _ in range(10)]
    fine = result_of(records, 4.0, None, cpu_s=4.0 * cores, client_cpu_s=0.0)
    assert "warnings" not in fine
    bad = result_of(records, 4.0, None, cpu_s=4.0 * (cores + 2.19), client_cpu_s=0.0)
    assert bad["server_cpu_cores"] > cores
    assert any("server_cpu_cores" in w and "impossible" in w for w in bad["warnings"])
    assert cores_warning("x", 2.0, available=2) is None and cores_warning("x", 2.01, available=2)

    results = {"machine": {"cores": 2},
               "engine": {"runs": [{"variant": "int8", "layout": "2x1", "batching": "grouped 32",
                                    "texts_per_s": 104.2, "cpu_cores": 1.98,
                                    "batch_latency_ms": {"p50": 100, "p95": 120, "p99": 130}}]},
               "modes": {"seed": {"ready_s": 2.0, "peak_rss_mb": 390, "c1": _closed(9, 100),
                                  "c32": {**_closed(9, 3000), "server_cpu_cores": 4.19}}}}
    warnings = cpu_warnings(results)
    assert len(warnings) == 1 and "modes.seed.c32.server_cpu_cores = 4.19" in warnings[0]
    assert "2-core" in warnings[0]
    lines = headline(results)
    assert lines[0] == warnings[0]
    results["modes"]["seed"]["c32"]["server_cpu_cores"] = 1.99
    assert not any(line.startswith("WARNING") for line in headline(results))
    # a server faster than the raw ceiling (124.8 vs 104.2 in the issue) is flagged too
    results["modes"]["batched"] = {"ready_s": 2.0, "peak_rss_mb": 400, "paired_ceiling": 130.0,
                                   "c1": _closed(90, 6), "c32": _closed(124.8, 250)}
    flagged = [line for line in headline(results) if line.startswith("WARNING")]
    assert len(flagged) == 1 and "124.8" in flagged[0] and "raw ceiling (104.2)" in flagged[0]


def test_server_cpu_still_counts_the_server_when_listing_its_workers_fails():
    """An empty tree on a psutil error made one sample 0 and the next the server's whole lifetime of CPU."""
    import os
    from types import SimpleNamespace

    import psutil

    from loadtest.spawn import Server

    server = Server("self", SimpleNamespace(pid=os.getpid(), poll=lambda: 0), 0, 0.0, Path("unused.log"))
    try:
        def fail(recursive=False):
            raise psutil.NoSuchProcess(os.getpid())

        server.ps.children = fail
        assert server._tree() == [server.ps]
        own = psutil.Process().cpu_times()
        assert server.cpu_s() >= own.user + own.system - 1e-6 > 0
    finally:
        server.stop()


def _encoded(length):
    from types import SimpleNamespace
    return SimpleNamespace(length=length)


def test_grouped_batches_keep_to_the_servers_token_cap():
    """The ceiling's batches were cut at 8192 padded tokens (a 22 x 372 batch, a quarter of a quick pass) while
    the server's batcher never forms more than max_batch_tokens (2048)."""
    from senti.model.engine import EngineConfig

    from loadtest.engines import grouped_batches

    lengths = [6, 12, 36, 36, 50, 120, 250, 372, 372, 400, 512] * 20
    batches = grouped_batches([_encoded(n) for n in lengths], 32)
    cap = EngineConfig().max_batch_tokens
    assert sorted(e.length for b in batches for e in b) == sorted(lengths)
    for batch in batches:
        assert len(batch) <= 32
        assert len(batch) == 1 or len(batch) * max(e.length for e in batch) <= cap


def test_drive_runs_one_full_pass_costliest_first_and_excludes_the_warmup():
    """A one-pass ceiling that ends on a long batch leaves the other sessions idle: runs go costliest first,
    the warm-up runs (one per session, of the costliest batch) are not counted."""
    import threading

    from loadtest.engines import batch_cost, costliest_first, drive

    batches = [[_encoded(20)] * 32, [_encoded(372)] * 5, [_encoded(40)] * 32, [_encoded(512)] * 4,
               [_encoded(10)] * 32]
    ordered = costliest_first(batches)
    costs = [batch_cost(b) for b in ordered]
    assert costs == sorted(costs, reverse=True)
    assert sorted(map(id, ordered)) == sorted(map(id, batches))

    class FakeModel:
        sessions = ["a", "b"]
        pad_to = None

        def __init__(self):
            self.calls, self.lock = [], threading.Lock()

        def run(self, session, batch):
            with self.lock:
                self.calls.append((session, batch))

    model = FakeModel()
    row = drive(model, batches, time_limit=60)
    warmup, timed = model.calls[:2], model.calls[2:]
    assert [(s, b) for s, b in warmup] == [("a", ordered[0]), ("b", ordered[0])]
    assert sorted(map(id, (b for _, b in timed))) == sorted(map(id, batches))
    assert row["texts"] == sum(len(b) for b in batches) and row["batches"] == len(batches) and row["complete"]
    # with pad_to every batch is as wide: the cost is the item count
    assert [len(b) for b in costliest_first(batches, pad_to=512)][:3] == [32, 32, 32]


def test_op_profile_sums_kernel_times_by_operator_after_the_warmup_runs(tmp_path):
    """ORT's profile: model_run events per run, one *_kernel_time event per node; the warm-up runs are skipped."""
    from loadtest.op_profile import kernel_times

    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(ts, op, dur):
        return {"cat": "Node", "name": f"/layer/{op}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0, 100), node(10, "MatMulIntegerToFloat", 60), node(80, "Softmax", 30),  # warm-up
              run(200, 50), node(210, "MatMulIntegerToFloat", 30), node(240, "Softmax", 5),
              node(245, "MatMulIntegerToFloat", 4), {"cat": "Node", "name": "/layer/fence_before", "ts": 246, "dur": 1}]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    by_op, run_us = kernel_times(path, skip_runs=1)
    assert by_op == {"MatMulIntegerToFloat": 34, "Softmax": 5}
    assert run_us == 50
    with pytest.raises(RuntimeError, match="fewer than the 2 to skip"):
        kernel_times(path, skip_runs=2)
