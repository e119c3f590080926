"""Where the INT8 graph spends its time, per operator type (ONNX Runtime's own profiler), on the ceiling's batches.

    python -m loadtest.op_profile [--bundle bundles/e5-small] [--texts 600] [--out op-profile.json]

One 1-thread session (what each batch worker runs) with ORT profiling on runs one pass over length-grouped
batches of 32 (the ceiling's, loadtest.engines.grouped_batches) of the bench's reviews; the kernel times of
every node are summed by operator type, after one untimed warm-up pass. The projections' share is then set
against ORT's own INT8 GEMM rate on one thread (loadtest.gemm): how far the graph's matrix products are from
that bound, and how much of the time is not matrix products at all (quantisation, softmax, norms, copies).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from senti.model.bundle import load_bundle
from senti.model.runtime import pad_batch

from .common import load_corpus, projection_flops, shuffled
from .engines import batch_cost, bundle_tokenizer, grouped_batches, make_session
from .gemm import gemm_peak
from .settings import ROOT, SEED

INT8_MATMULS = {"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}  # the weight projections
FLOAT_MATMULS = {"MatMul", "FusedMatMul", "Gemm"}  # attention's QK^T and AV (activations on both sides)


def kernel_times(profile: Path, skip_runs: int) -> tuple[dict[str, float], float]:
    """Microseconds per operator type over the model runs after the first `skip_runs`, and those runs' total."""
    events = json.loads(profile.read_text(encoding="utf-8"))
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) <= skip_runs:
        raise RuntimeError(f"the profile holds {len(runs)} runs, fewer than the {skip_runs} to skip")
    start = runs[skip_runs]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            by_op[event["args"]["op_name"]] += event["dur"]
    return dict(by_op), float(sum(r["dur"] for r in runs[skip_runs:]))


def profile(bundle_path: Path, count: int, seconds: float) -> dict:
    """The per-operator breakdown of one pass (see the module docstring)."""
    bundle = load_bundle(bundle_path)
    tok = bundle_tokenizer(bundle)
    texts = shuffled(load_corpus(dedupe=True), SEED)[:count]
    batches = grouped_batches(tok.encode_batch(texts), 32)
    feeds = [pad_batch(b, tok.pad_id) for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(bundle.model_file("default"), 1, profile_prefix=str(Path(tmp) / "ort"))
        names = [i.name for i in session.get_inputs()]
        for feed in feeds + feeds:  # the first pass warms up, the second is measured
            session.run(None, {n: feed[n] for n in names})
        by_op, run_us = kernel_times(Path(session.end_profiling()), skip_runs=len(feeds))
    kernels = sum(by_op.values())
    padded_flops = sum(batch_cost(b) for b in batches)
    int8_flops = sum(len(b) * projection_flops(max(e.length for e in b)) for b in batches)
    int8_us = sum(us for op, us in by_op.items() if op in INT8_MATMULS)
    float_us = sum(us for op, us in by_op.items() if op in FLOAT_MATMULS)
    peak = gemm_peak("int8", 1, 1, seconds)["gops"] * 1e9  # ORT's INT8 GEMM on one thread, ops per second
    achieved = int8_flops / (int8_us / 1e6) if int8_us else 0.0
    return {
        "bundle": str(bundle_path), "texts": len(texts), "batches": len(batches),
        "run_ms": round(run_us / 1e3, 1), "kernel_ms": round(kernels / 1e3, 1),
        "outside_kernels_share": round(1 - kernels / run_us, 3) if run_us else None,
        "ops": {op: {"ms": round(us / 1e3, 1), "share": round(us / kernels, 3)}
                for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "int8_matmul_share": round(int8_us / kernels, 3) if kernels else None,
        "float_matmul_share": round(float_us / kernels, 3) if kernels else None,
        "int8_gemm_peak_gops_1_thread": round(peak / 1e9, 1),
        "int8_matmul_gops": round(achieved / 1e9, 1),
        "int8_matmul_of_peak": round(achieved / peak, 3) if peak else None,
        "graph_of_peak": round(padded_flops / (run_us / 1e6) / peak, 3) if run_us and peak else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "e5-small")
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--gemm-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = profile(args.bundle, args.texts, args.gemm_seconds)
    for op, row in result["ops"].items():
        print(f"{op:28s} {row['ms']:9.1f} ms  {row['share']:6.1%}")
    print(f"INT8 projections {result['int8_matmul_share']:.1%} of kernel time at {result['int8_matmul_gops']} GOPS = "
          f"{result['int8_matmul_of_peak']:.0%} of ORT's INT8 GEMM on one thread "
          f"({result['int8_gemm_peak_gops_1_thread']} GOPS); attention's float products "
          f"{result['float_matmul_share']:.1%}; the whole graph at {result['graph_of_peak']:.0%} of that GEMM rate; "
          f"time outside kernels {result['outside_kernels_share']:.1%}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
