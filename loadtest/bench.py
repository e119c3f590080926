"""`python -m loadtest.bench`: every scenario in one run on this machine, so the ratios between them hold.

Starts each server itself on 127.0.0.1 (one at a time, never two at once), drives it with an asyncio gRPC
client from this process, samples the server's CPU and memory, writes JSON and PNG plots to
loadtest/results/<run>/ and prints a summary table. Every loop is bounded in count and in time.

Scenarios (--scenarios, comma-separated; default all):
  engine    the raw engine, no server: ONNX Runtime on the same texts (batch 1 and length-grouped batch 32)
  variants  engine variants (fp32, ORT transformer fusion, thread layouts) and the physical bound
  modes     the server in batched, per-thread and lock modes, and the seed design (lock, batch 1, pad 512),
            closed loop at concurrency 1 and 32
  http      Predict over HTTP/JSON vs gRPC on one server at concurrency 1 and 32 (turns alternating), and gRPC
            c32 with the HTTP server off vs on and idle (A/B, interleaved)
  sweep     Predict at fixed arrival rates up to saturation (batched mode)
  stream    PredictStream feeding N comments on one stream
  zeroshot  ClassifyZeroShot with 2, 5, 10 and 20 labels
  cache     result cache on vs off at the corpus's own repeat rate
  invariance  each text's scores sent alone vs at concurrency 32 (in mixed batches): the largest difference
  mlserver  MLServer 1.7.1 serving the same bundle (its own venv, --mlserver-venv), with and without adaptive
            batching, closed loop at concurrency 1 and 32; skipped with a note when that venv is missing
  tools     short smoke runs of the k6 script and the locust user against the batched server
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import common
from .context import Bench
from .machine import wait_for_quiet
from .report import COLUMNS, headline, summary_rows
from .scenarios import cache, engine, http, invariance, mlserver, modes, stream, sweep, tools, zeroshot
from .settings import RESULTS, ROOT, SEED, log

# every server scenario, in the order a run takes them (after engine and variants, which run together)
RUNNERS = {"modes": modes.run, "http": http.run, "mlserver": mlserver.run, "sweep": sweep.run,
           "stream": stream.run, "zeroshot": zeroshot.run, "cache": cache.run, "invariance": invariance.run,
           "tools": tools.run}
ALL_SCENARIOS = ("engine", "variants", *RUNNERS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "e5-small")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(ALL_SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="short steps and fewer items (about 4 minutes)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per closed-loop run")
    parser.add_argument("--stream-items", type=int, default=None, help="comments on the stream (default 10000)")
    parser.add_argument("--repeat-rate", type=float, default=None,
                        help="cache scenario repeat rate (default: the corpus's own duplicate share)")
    parser.add_argument("--ceiling", type=float, default=280.0,
                        help="raw-engine texts/s to scale the sweep by when the engine scenario is not run")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default loadtest/results/<time>)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-paired", dest="paired", action="store_false",
                        help="skip re-measuring the raw ceiling right before each server scenario")
    parser.add_argument("--mlserver-venv", type=Path, default=Path.home() / ".cache" / "senti-bench" / "mlserver-venv",
                        help="virtual environment with loadtest/mlserver/requirements.txt installed")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="first wait up to S seconds for the 1-minute load average to drop under 0.6")
    parser.add_argument("--export-texts", type=Path, default=None, metavar="PATH",
                        help="write the shuffled unique review texts (JSON list, for k6), then exit")
    parser.add_argument("--export-ghz", type=Path, default=None, metavar="PATH",
                        help="write them as PredictRequest messages (ghz data file), then exit")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.out is None:
        args.out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.export_texts or args.export_ghz) and not (args.bundle / "bundle.json").is_file():
        print(f"no bundle at {args.bundle}: run `make model` first", file=sys.stderr)
        return 2
    if args.export_texts or args.export_ghz:
        texts = common.shuffled(common.load_corpus(dedupe=True), SEED)
        for path, data in ((args.export_texts, texts), (args.export_ghz, [{"texts": [t]} for t in texts])):
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
                print(f"{len(texts)} texts -> {path}")
        return 0
    scenarios = args.scenarios.split(",")
    wait_for_quiet(args.wait_quiet)
    bench = Bench(args)
    started = time.monotonic()
    log(f"results in {args.out}; scenarios: {', '.join(scenarios)}{' (quick)' if args.quick else ''}")
    if "engine" in scenarios or "variants" in scenarios:
        engine.run(bench, variants="variants" in scenarios)
        bench.save()
    for name, run in RUNNERS.items():
        if name in scenarios:
            run(bench)
    bench.results["bench_seconds"] = round(time.monotonic() - started, 1)
    bench.results["machine"]["load_avg_at_end"] = os.getloadavg()
    rows = summary_rows(bench.results)
    bench.results["summary"] = rows
    bench.save()
    if not args.no_plots:
        from . import plots
        bench.results["plots"] = [os.path.relpath(p, ROOT) for p in plots.draw(bench.results, args.out)]
        bench.save()
    print()
    print(common.format_table(rows, COLUMNS))
    print()
    for line in headline(bench.results):
        print(line)
    latest = RESULTS / "latest"
    if args.out.parent == RESULTS:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(args.out.name)
    log(f"done in {bench.results['bench_seconds']} s: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
