"""senti-batch: score JSONL, CSV or Parquet files of comments (sentiment or zero-shot) with Ray Data.

    senti-batch reviews.jsonl --out scored/                                  # sentiment, local Ray
    senti-batch reviews.csv --out topics/ --task zeroshot --labels 物流,质量,价格,服务
    senti-batch s3://bucket/comments/ --out s3://bucket/scored/ --address auto   # on a running Ray cluster

The output folder gets one part file per block of --block-rows input rows (part-000000.parquet, ...), each
row with the input's id column, its row number, the API's fields (sentiment: label, score, scores, polarity,
truncated, tokens; zero-shot: labels, truncated) and error / error_code for a row that could not be scored
(null otherwise). Run the same command again after a crash or an interruption: finished blocks are kept and
only the missing ones are scored. Exit status: 0 when every block is done, 3 when blocks are left (after
--max-blocks), 2 when the job cannot run as asked, 1 when it stopped on the way (rerun to resume).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="senti-batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="input files, folders or (local) glob patterns; local paths or "
                   "URIs pyarrow reads (s3://, gs://, hdfs://)")
    p.add_argument("--out", required=True, help="output folder (created; a rerun resumes it)")
    p.add_argument("--task", choices=("sentiment", "zeroshot"), default="sentiment")
    p.add_argument("--labels", default="", help="zero-shot: candidate labels, comma-separated (, or ，)")
    p.add_argument("--template", default="", help="zero-shot: hypothesis template with one {} (default: the "
                   "bundle's)")
    p.add_argument("--multi-label", action="store_true", help="zero-shot: score each label on its own")
    p.add_argument("--strict", action="store_true", help="a text over the model's max tokens is an error row "
                   "instead of being truncated")
    p.add_argument("--text-column", default="text", help="field or column holding the text (default: text)")
    p.add_argument("--id-column", default="id", help="field or column copied to the output as the row's id "
                   "(default: id; null where a row has none; JSON and CSV ids are written as strings)")
    p.add_argument("--format", dest="input_format", choices=("jsonl", "csv", "parquet"),
                   help="input format (default: from each file's suffix)")
    p.add_argument("--output-format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--block-rows", type=int, default=1000, help="input rows per output block: the unit of "
                   "work, of progress and of resuming (default: 1000)")
    p.add_argument("--bundle", default="bundles/e5-small", help="model bundle (on every node of a cluster)")
    p.add_argument("--zeroshot-bundle", help="optional second bundle that serves zero-shot")
    p.add_argument("--variant", choices=("default", "fp32"), default="default")
    p.add_argument("--address", help="Ray cluster to join (auto, ray://head:10001; default: RAY_ADDRESS, else "
                   "a local Ray on this machine)")
    p.add_argument("--num-cpus", type=int, help="local Ray only: CPUs it may use (default: all)")
    p.add_argument("--actors", type=int, help="scoring actors (default: one per node)")
    p.add_argument("--cpus-per-actor", type=int, help="CPUs per actor (default: the smallest node's CPUs)")
    p.add_argument("--sessions", type=int, default=0, help="ONNX Runtime sessions per actor (default: one per "
                   "CPU of the actor)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-batch-tokens", type=int, default=2048)
    p.add_argument("--overhead-tokens", type=int, default=48)
    p.add_argument("--cache-size", type=int, default=10000, help="result cache per actor (repeated texts are "
                   "scored once); 0 turns it off")
    p.add_argument("--max-chars-per-text", type=int, default=10000)
    p.add_argument("--max-blocks", type=int, help="score at most this many of the blocks left, then stop "
                   "(a later run does the rest)")
    p.add_argument("--overwrite", action="store_true", help="discard what --out holds and start afresh")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import ray  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as error:
        print(f"senti-batch needs the batch extra (pip install 'senti[batch]'): {error}", file=sys.stderr)
        return 2
    from .inputs import InputError
    from .job import JobConfig, JobError, estimate, run_job

    labels = tuple(label.strip() for label in args.labels.replace("，", ",").split(",") if label.strip())
    config = JobConfig(
        inputs=args.inputs, out=args.out, task=args.task, labels=labels, template=args.template,
        multi_label=args.multi_label, strict=args.strict, text_column=args.text_column, id_column=args.id_column,
        input_format=args.input_format, output_format=args.output_format, block_rows=args.block_rows,
        bundle=args.bundle, zeroshot_bundle=args.zeroshot_bundle, variant=args.variant, address=args.address,
        num_cpus=args.num_cpus, actors=args.actors, cpus_per_actor=args.cpus_per_actor, sessions=args.sessions,
        max_batch_size=args.max_batch_size, max_batch_tokens=args.max_batch_tokens,
        overhead_tokens=args.overhead_tokens, cache_size=args.cache_size,
        max_chars_per_text=args.max_chars_per_text, max_blocks=args.max_blocks, overwrite=args.overwrite,
        progress=args.progress)
    try:
        result = run_job(config)
    except (JobError, InputError) as error:
        print(f"senti-batch: {error}", file=sys.stderr)
        return 2
    except Exception:  # the job stopped (a worker lost, a file unreadable): what is finished stays finished
        logging.getLogger("senti.batch").exception("the job stopped")
        print(f"senti-batch: the job stopped (above); the finished blocks in {args.out} are kept: run the same "
              "command again to resume", file=sys.stderr)
        return 1
    figures = estimate(result)
    if args.json:
        print(json.dumps({**result.as_dict(), **figures}, ensure_ascii=False))
    else:
        state = "done" if result.complete else f"{figures['blocks_left']} block(s) left: run it again to resume"
        print(f"senti-batch: {result.rows} rows scored ({result.errors} with an error) in {result.seconds:.1f} s, "
              f"{figures['rows_per_s']} rows/s; {result.skipped} block(s) kept from an earlier run; {state}; "
              f"output: {result.out}", file=sys.stderr)
    return 0 if result.complete else 3


if __name__ == "__main__":
    sys.exit(main())
