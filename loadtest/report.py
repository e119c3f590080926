"""The summary table and the goal lines of a bench run, from its results dict (no I/O)."""
from __future__ import annotations

import os


def _closed_loop_row(scenario: str, entry: dict, run: dict) -> dict:
    """A table row for one closed-loop run of a server (senti or a peer) and its server-level figures."""
    latency = run["latency_ms"]
    return {"scenario": scenario, "texts_per_s": run["texts_per_s"], "p50": latency.get("p50"),
            "p95": latency.get("p95"), "p99": latency.get("p99"), "cpu": run["server_cpu_cores"],
            "rss": entry.get("peak_rss_mb"), "ready": entry.get("ready_s"), "paired": entry.get("paired_ceiling")}


def summary_rows(results: dict) -> list[dict]:
    """One row per measured configuration, with ratios to the raw ceiling and to the seed design."""
    rows = []
    engine = results.get("engine", {})
    runs = engine.get("runs", [])
    ceiling = max((r["texts_per_s"] for r in runs if r["variant"] == "int8" and r["batching"] == "grouped 32"),
                  default=None)
    modes = results.get("modes", {})
    seed = modes.get("seed", {}).get("c32", {}).get("texts_per_s")
    for r in runs:
        if r["variant"] != "int8" or r["batching"] not in ("batch 1", "grouped 32", "arrival 32", "batch 1 pad 512"):
            continue
        if r["layout"].endswith("spin") or r["layout"] in ("1x1",) or r["layout"] == "2x2":
            continue
        lat = r["batch_latency_ms"]
        rows.append({"scenario": f"raw engine {r['batching']} ({r['layout']})", "texts_per_s": r["texts_per_s"],
                     "p50": lat.get("p50"), "p95": lat.get("p95"), "p99": lat.get("p99"),
                     "cpu": r.get("cpu_cores")})
    for name, entry in modes.items():
        for c in ("c1", "c8", "c32"):
            if c not in entry:
                continue
            rows.append(_closed_loop_row(f"server {name} {c}", entry, entry[c]))
    http = results.get("http", {})
    compare = http.get("compare")
    if compare:
        for c in ("c1", "c32"):
            for protocol, label in (("grpc", "gRPC"), ("http", "HTTP")):
                if c in compare.get(protocol, {}):
                    rows.append(_closed_loop_row(f"http: {label} Predict {c} (one server)", compare,
                                                 compare[protocol][c]))
    ab = http.get("ab")
    if ab:
        for arm, label in (("off", "HTTP off"), ("on", "HTTP on, idle")):
            if arm in ab:
                rows.append(_closed_loop_row(f"http A/B: gRPC Predict c32, {label}", ab[arm], ab[arm]))
    for name, entry in results.get("mlserver", {}).items():
        if not isinstance(entry, dict) or "c1" not in entry:
            continue
        for c in ("c1", "c32"):
            rows.append(_closed_loop_row(f"peer {name} {c}", entry, entry[c]))
    sweep = results.get("sweep")
    if sweep:
        for key, label in (("max_rate_p99_100ms", "p99<100ms"), ("max_rate_p99_500ms", "p99<500ms")):
            step = next((s for s in sweep["steps"] if s["achieved"] == sweep[key]), None)
            rows.append({"scenario": f"Predict open loop, max rate {label}", "texts_per_s": sweep[key],
                         "p50": step["latency_ms"].get("p50") if step else None,
                         "p95": step["latency_ms"].get("p95") if step else None,
                         "p99": step["latency_ms"].get("p99") if step else None,
                         "cpu": step["server_cpu_cores"] if step else None, "rss": sweep.get("peak_rss_mb"),
                         "ready": sweep.get("ready_s")})
    stream = results.get("stream")
    if stream:
        lat = stream["latency_ms"]
        rows.append({"scenario": f"PredictStream {stream['comments']} comments", "texts_per_s": stream["comments_per_s"],
                     "p50": lat.get("p50"), "p95": lat.get("p95"), "p99": lat.get("p99"),
                     "cpu": stream["server_cpu_cores"], "rss": stream["peak_rss_mb"]})
    for k, e in results.get("zeroshot", {}).get("labels", {}).items():
        rows.append({"scenario": f"ClassifyZeroShot {k} labels c32", "texts_per_s": e["texts_per_s"],
                     "p50": e["latency_ms"].get("p50"), "p95": e["latency_ms"].get("p95"),
                     "p99": e["latency_ms"].get("p99"), "cpu": e["server_cpu_cores"], "rss": e.get("server_rss_mb")})
    cache = results.get("cache")
    if cache:
        for name in ("off", "on"):
            e = cache[name]
            rows.append({"scenario": f"cache {name} c32 ({cache['sent_repeat_fraction']:.0%} repeats)",
                         "texts_per_s": e["texts_per_s"], "p50": e["latency_ms"].get("p50"),
                         "p95": e["latency_ms"].get("p95"), "p99": e["latency_ms"].get("p99"),
                         "cpu": e["server_cpu_cores"], "rss": e.get("server_rss_mb")})
    invariance = results.get("invariance")
    if invariance:
        rows.append({"scenario": f"score invariance: max |score difference| {invariance['max_abs_score_difference']:.3g}, "
                                 f"{invariance['texts']} texts alone vs at c32"})
    if sweep and sweep.get("paired_ceiling"):
        for row in rows:
            if row["scenario"].startswith("Predict open loop"):
                row["paired"] = sweep["paired_ceiling"]
    for row in rows:
        if row.get("cpu") and row.get("texts_per_s"):
            row["cpu_ms"] = round(1000 * row["cpu"] / row["texts_per_s"], 2)
        if row.get("paired") and row.get("texts_per_s") is not None:
            row["x_paired"] = round(row["texts_per_s"] / row["paired"], 2)
        if ceiling and row.get("texts_per_s") is not None:
            row["x_ceiling"] = round(row["texts_per_s"] / ceiling, 2)
        if seed and row.get("texts_per_s") is not None:
            row["x_seed"] = round(row["texts_per_s"] / seed, 1)
    return rows


COLUMNS = [("scenario", "scenario"), ("texts_per_s", "texts/s"), ("p50", "p50 ms"), ("p95", "p95 ms"),
           ("p99", "p99 ms"), ("cpu", "server cores"), ("cpu_ms", "CPU ms/text"), ("rss", "RSS MB"), ("ready", "ready s"),
           ("x_ceiling", "x ceiling"), ("x_paired", "x paired ceiling"), ("x_seed", "x seed")]


def _cpu_figures(node, path: str = ""):
    """(path, value) of every CPU figure in cores (a key ending in 'cpu_cores') anywhere in the results."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).endswith("cpu_cores") and isinstance(value, (int, float)):
                yield where, value
            else:
                yield from _cpu_figures(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            label = value.get("scenario") or value.get("variant") if isinstance(value, dict) else None
            yield from _cpu_figures(value, f"{path}[{i}{': ' + str(label) if label else ''}]")


def cores_warning(what: str, cores: float, available: int | None = None) -> str | None:
    """A warning when a CPU figure (in cores) is above the machine's core count (`available`, else this
    machine's), which no measurement of one machine can be: CPU or wall time was counted wrong. None when it is
    plausible."""
    available = available or os.cpu_count() or 1
    if cores > available:
        return (f"WARNING: {what} = {cores} CPU cores on a {available}-core machine is impossible: "
                f"its CPU accounting is wrong, do not trust it")
    return None


def cpu_warnings(results: dict) -> list[str]:
    """A warning per CPU figure of a run above its machine's core count (results['machine']['cores'], else this
    machine's)."""
    cores = results.get("machine", {}).get("cores")
    warnings = (cores_warning(where, value, cores) for where, value in _cpu_figures(results)
                if not where.startswith("summary"))
    return [warning for warning in warnings if warning]


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def headline(results: dict) -> list[str]:
    """The goal lines: served c32 vs the ceiling, c1 vs raw batch 1, vs the seed design, zero-shot, cache;
    first a warning for every CPU figure above the machine's core count."""
    lines = cpu_warnings(results)
    runs = results.get("engine", {}).get("runs", [])
    ceiling = max((r["texts_per_s"] for r in runs if r["variant"] == "int8" and r["batching"] == "grouped 32"),
                  default=None)
    modes = results.get("modes", {})
    batched = modes.get("batched", {})
    seed = modes.get("seed", {}).get("c32", {}).get("texts_per_s")
    if batched.get("paired_ceiling") and "c32" in batched:
        c32, paired = batched["c32"]["texts_per_s"], batched["paired_ceiling"]
        lines.append(f"served Predict c32 (batched): {c32 / paired:.0%} of the raw ceiling measured right before it "
                     f"({paired} texts/s; goal >= 90%)")
    if ceiling and "c32" in batched:
        c32 = batched["c32"]["texts_per_s"]
        lines.append(f"served Predict c32 (batched): {c32} texts/s = {c32 / ceiling:.0%} of the raw ceiling "
                     f"{ceiling} (goal >= 90%)" + (f"; {c32 / seed:.1f}x the seed design ({seed})" if seed else ""))
    for name, limit in (("raw ceiling", ceiling), ("paired raw ceiling", batched.get("paired_ceiling"))):
        if limit and "c32" in batched and batched["c32"]["texts_per_s"] > limit:
            lines.append(f"WARNING: the server served more ({batched['c32']['texts_per_s']} texts/s) than the "
                         f"{name} ({limit}): that ceiling is not the engine's best, ratios to it mislead")
    raw1 = [r for r in runs if r["variant"] == "int8" and r["batching"] == "batch 1"
            and not r["layout"].endswith("spin")]
    if raw1 and "c1" in batched:
        best = min(raw1, key=lambda r: r["batch_latency_ms"]["p50"])
        p50 = batched["c1"]["latency_ms"]["p50"]
        lines.append(f"c1 latency p50 {p50} ms vs raw batch-1 p50 {best['batch_latency_ms']['p50']} ms "
                     f"({best['layout']}): {p50 / best['batch_latency_ms']['p50'] - 1:+.0%} (goal within +10%)")
    if batched.get("paired_batch1_p50_ms") and "c1" in batched:
        p50, raw = batched["c1"]["latency_ms"]["p50"], batched["paired_batch1_p50_ms"]
        lines.append(f"c1 latency p50 {p50} ms vs raw batch-1 p50 {raw} ms measured right before it on the same "
                     f"texts: {p50 / raw - 1:+.0%} (goal within +10%)")
    no_solo = modes.get("batched-no-solo", {})
    for c in ("c1", "c8", "c32"):
        if c in batched and c in no_solo:
            lines.append(f"solo session on / off, {c}: {batched[c]['texts_per_s'] / no_solo[c]['texts_per_s']:.2f}x "
                         f"texts/s, p50 {batched[c]['latency_ms']['p50']} vs {no_solo[c]['latency_ms']['p50']} ms")
    invariance = results.get("invariance")
    if invariance:
        lines.append(f"score invariance: max |score difference| {invariance['max_abs_score_difference']:.3g} over "
                     f"{invariance['texts']} texts alone vs at c32 ({invariance['batched_with_others']} batched with "
                     f"others; goal <= 1e-6)")
    peers = [e["c32"]["texts_per_s"] for e in results.get("mlserver", {}).values() if isinstance(e, dict) and "c32" in e]
    if peers and "c32" in batched:
        best = max(peers)
        lines.append(f"served Predict c32 vs the best MLServer 1.7.1 configuration ({best}): "
                     f"{batched['c32']['texts_per_s'] / best:.1f}x")
    compare = results.get("http", {}).get("compare")
    if compare and compare.get("ratio"):
        parts = []
        for c, ratio in compare["ratio"].items():
            p50 = (compare["http"][c]["latency_ms"].get("p50"), compare["grpc"][c]["latency_ms"].get("p50"))
            parts.append(f"{c} {_times(ratio['texts_per_s'])} ({compare['http'][c]['texts_per_s']} vs "
                         f"{compare['grpc'][c]['texts_per_s']} texts/s, p50 {p50[0]} vs {p50[1]} ms)")
        lines.append(f"HTTP / gRPC Predict on one server: {'; '.join(parts)} (goal >= 0.85 each)")
    ab = results.get("http", {}).get("ab")
    if ab and ab.get("ratio_on_off"):
        legs = ", ".join(f"{leg['http']} {leg['texts_per_s']}" for leg in ab["legs"])
        pairs = ", ".join(_times(r) for r in ab["ratio_on_off"].get("pairs", []))
        lines.append(f"gRPC Predict c32 with HTTP on (idle) / off: {_times(ab['ratio_on_off']['texts_per_s'])} texts/s "
                     f"(legs {legs}; pairs {pairs or '-'}; goal: no slowdown beyond the legs' spread, "
                     f"{max(ab['off']['spread'], ab['on']['spread']):.0%}); idle RSS on / off "
                     f"{ab['on'].get('rss_idle_mb', '-')} / {ab['off'].get('rss_idle_mb', '-')} MB")
    for name, entry in modes.items():
        lines.append(f"{name}: ready {entry['ready_s']} s, peak RSS {entry['peak_rss_mb']} MB")
    zs = results.get("zeroshot")
    if zs:
        lines.append(f"zero-shot throughput 2 labels / 20 labels: {zs['slowdown_20_vs_2']}x (flat = 1.0)")
    cache = results.get("cache")
    if cache:
        lines.append(f"cache on vs off at {cache['sent_repeat_fraction']:.0%} repeats: {cache['speedup']}x "
                     f"(hit rate {cache['on']['hit_rate']:.0%})")
    return lines



def main(argv: list[str] | None = None) -> int:
    """`python -m loadtest.report [results.json]`: the table (Markdown) and goal lines of a finished run."""
    import json
    import sys
    from pathlib import Path

    from .common import format_table
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parent / "results" / "latest" / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    print(format_table(summary_rows(results), COLUMNS))
    print()
    for line in headline(results):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
