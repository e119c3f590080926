"""The raw engine, no server: ONNX Runtime throughput and latency on the same texts, engine variants, and the
physical bound (measured peak GEMM rate / FLOPs per text).

Run by `python -m loadtest.bench` in a subprocess of its own (so its memory and threads never mix with a
server's); `python -m loadtest.engines --help` runs it alone.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from senti.model.batcher import plan_group
from senti.model.bundle import load_bundle
from senti.model.engine import EngineConfig
from senti.model.runtime import pad_batch
from senti.model.types import Encoded

from .common import encoder_flops, mean_flops, summarize
from .gemm import gemm_peak
from .rss import rss_mb

log = logging.getLogger("loadtest.engines")

# the server's default cap on padded tokens per batch: the ceiling's batches must be ones the server could run
# (a 22 x 372-token batch it never forms is a quarter of a 600-text pass, and slow per text: attention is
# quadratic in width and its scores leave the cache)
SERVER_MAX_BATCH_TOKENS = EngineConfig().max_batch_tokens


def bundle_tokenizer(bundle):
    """The tokenizer the server would use for this bundle."""
    from senti.model import tokenize
    if hasattr(tokenize, "load_tokenizer"):
        return tokenize.load_tokenizer(bundle)
    return tokenize.TextTokenizer(bundle.file("tokenizer"), bundle.max_length, bundle.text_prefix)


def make_session(path: Path, threads: int, spinning: bool = False,
                 level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                 profile_prefix: str | None = None) -> ort.InferenceSession:
    """A CPU session configured as model/runtime.py does, with the knobs under study exposed (`profile_prefix`:
    ORT's profiler on, writing there)."""
    options = ort.SessionOptions()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class Model:
    """Sessions of one ONNX file, and the forward pass of a batch of encoded items."""

    def __init__(self, path: Path, input_names: Sequence[str], output: str, pad_id: int, sessions: int,
                 threads: int, spinning: bool = False, pad_to: int | None = None):
        before, started = rss_mb(), time.monotonic()
        self.sessions = [make_session(path, threads, spinning) for _ in range(sessions)]
        self.load_s = time.monotonic() - started
        self.rss_delta_mb = rss_mb() - before
        self.input_names, self.output, self.pad_id, self.pad_to = tuple(input_names), output, pad_id, pad_to

    def run(self, session: ort.InferenceSession, items: Sequence[Encoded]) -> np.ndarray:
        feeds = pad_batch(items, self.pad_id, self.pad_to)
        return session.run([self.output], {n: feeds[n] for n in self.input_names})[0]


def batch_cost(batch: Sequence[Encoded], pad_to: int | None = None) -> float:
    """FLOPs of one forward pass over a batch padded to its longest item (or to `pad_to`)."""
    return len(batch) * encoder_flops(pad_to or max(e.length for e in batch))


def costliest_first(batches: Sequence[Sequence[Encoded]], pad_to: int | None = None) -> list[Sequence[Encoded]]:
    """The batches, most expensive first (stable among equals). Sessions pulling from a shared cursor then end
    the pass on cheap batches: in any other order the pass may end with one session running a long batch while
    the others idle, and the idle time counts against the engine (with 2 sessions and 20 batches, up to ~10%)."""
    order = sorted(range(len(batches)), key=lambda i: -batch_cost(batches[i], pad_to))
    return [batches[i] for i in order]


def drive(model: Model, batches: Sequence[Sequence[Encoded]], time_limit: float) -> dict:
    """Every session pulls the next batch from a shared cursor until one full pass over `batches` is done
    (or the time limit cuts it short: then `complete` is false). A full pass keeps the length mix exact; the
    pass runs the costliest batches first (see costliest_first), after one untimed run of the costliest per
    session (its buffers are the largest the pass needs, so no timed run pays for allocating them)."""
    batches = costliest_first(batches, model.pad_to)
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    texts = [0]

    def worker(session):
        while time.monotonic() < deadline:
            with lock:
                index = state["next"]
                if index >= len(batches):
                    return
                state["next"] += 1
            batch = batches[index]
            started = time.perf_counter()
            model.run(session, batch)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                texts[0] += len(batch)

    # one untimed run per session first: the first runs pay allocation
    for session in model.sessions:
        model.run(session, batches[0])
    deadline = time.monotonic() + time_limit
    started, cpu0 = time.monotonic(), time.process_time()
    threads = [threading.Thread(target=worker, args=(s,)) for s in model.sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - started, time.process_time() - cpu0
    # CPU time per text barely depends on how much of the machine other work takes: the noise-robust figure
    return {"texts_per_s": round(texts[0] / wall, 1), "cpu_ms_per_text": round(1000 * cpu / max(1, texts[0]), 2),
            "cpu_cores": round(cpu / wall, 2), "texts": texts[0], "batches": len(latencies),
            "complete": len(latencies) == len(batches), "seconds": round(wall, 2),
            "batch_latency_ms": summarize(latencies, 1000)}


def grouped_batches(encoded: Sequence[Encoded], size: int,
                    max_tokens: int = SERVER_MAX_BATCH_TOKENS) -> list[list[Encoded]]:
    """Batches of up to `size` items grouped by token length (sorted, then cut), within a padded-token cap."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    out, current = [], []
    for i in order:
        if current and (len(current) >= size or encoded[i].length * (len(current) + 1) > max_tokens):
            out.append(current)
            current = []
        current.append(encoded[i])
    if current:
        out.append(current)
    # interleave long and short batches so both sessions get a mix
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.permutation(len(out))]


def arrival_batches(encoded: Sequence[Encoded], size: int) -> list[list[Encoded]]:
    """Batches of `size` in arrival order: padded to each batch's longest item."""
    return [list(encoded[i:i + size]) for i in range(0, len(encoded), size)]


def planned_batches(encoded: Sequence[Encoded], size: int, overhead: int) -> list[list[Encoded]]:
    """What the server's batcher would cut from a window of 4*size queued items (model.batcher.plan_group)."""
    out = []
    window = 4 * size
    for start in range(0, len(encoded), window):
        chunk = encoded[start:start + window]
        for group in plan_group([e.length for e in chunk], size, SERVER_MAX_BATCH_TOKENS, overhead):
            out.append([chunk[i] for i in group])
    return out


# -- variants -----------------------------------------------------------------------------------------------

def build_fused_int8(fp32: Path, out: Path) -> Path:
    """ORT transformer fusion (attention, SkipLayerNorm, BiasGelu) on the fp32 graph, then the bundle's INT8
    recipe (dynamic, per-channel QInt8, MatMul + Gather, reduce_range). Cached by path."""
    if out.is_file():
        return out
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    out.parent.mkdir(parents=True, exist_ok=True)
    fused = out.with_name(out.stem + ".fp32.onnx")
    from onnxruntime.transformers.fusion_options import FusionOptions
    options = FusionOptions("bert")
    # keep the word-embedding Gather outside EmbedLayerNormalization, so the INT8 recipe still quantizes the
    # 250k x 384 table (fused, it stays fp32: +280 MB of memory)
    options.enable_embed_layer_norm = False
    optimized = optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=0,
                               optimization_options=options)
    optimized.save_model_to_file(str(fused))
    log.info("fusion: %s", optimized.get_fused_operator_statistics())
    quantize_dynamic(fused, out, op_types_to_quantize=["MatMul", "Gather"], per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("bundles/e5-small"))
    parser.add_argument("--texts", type=Path, required=True, help="JSON list of texts (the bench's sample)")
    parser.add_argument("--limit", type=float, default=60.0, help="time limit of one measurement (one pass)")
    parser.add_argument("--variants", action="store_true", help="also fp32, fused INT8 and thread layouts")
    parser.add_argument("--cache-dir", type=Path, default=Path("loadtest/results/variants"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ceiling-only", action="store_true",
                        help="only the ceiling (2x1 sessions, grouped batches of 32): the bench's paired check")
    parser.add_argument("--batch1-only", action="store_true",
                        help="only batch 1 on one session with every core's threads (what the solo session runs): "
                             "the bench's paired check of a lone request's latency")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)

    bundle = load_bundle(args.bundle)
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    tok = bundle_tokenizer(bundle)
    started = time.perf_counter()
    encoded = [tok.encode_batch([t])[0] for t in texts[:2000]]
    tokenize_us = (time.perf_counter() - started) * 1e6 / min(2000, len(texts))
    encoded = tok.encode_batch(texts)
    lengths = [e.length for e in encoded]
    flops = mean_flops(lengths)
    cores = os.cpu_count() or 1
    secs = 3.0
    result: dict = {"texts": len(texts), "mean_tokens": round(float(np.mean(lengths)), 1),
                    "tokenize_us_per_text": round(tokenize_us, 1), "gflop_per_text": round(flops / 1e9, 3),
                    "rss_start_mb": round(rss_mb(), 1), "runs": []}
    one = [[e] for e in encoded]
    grouped = grouped_batches(encoded, 32)
    arrival = arrival_batches(encoded[:320], 32)  # slow (padding): a subset keeps it short
    int8, fp32 = bundle.model_file("default"), bundle.model_file("fp32")

    def measure(name: str, path: Path, sessions: int, threads: int, batches, label: str, spinning=False,
                pad_to=None):
        model = Model(path, bundle.input_names, bundle.output_name, tok.pad_id, sessions, threads, spinning, pad_to)
        row = {"variant": name, "layout": f"{sessions}x{threads}" + ("+spin" if spinning else ""),
               "batching": label, "load_s": round(model.load_s, 2), "rss_delta_mb": round(model.rss_delta_mb, 1)}
        row.update(drive(model, batches, args.limit))
        row["ms_per_text_p50"] = round(row["batch_latency_ms"].get("p50", 0) / max(1, len(batches[0])), 2) \
            if label == "batch 1" else None
        log.info("%s %s %s: %.1f texts/s", name, row["layout"], label, row["texts_per_s"])
        result["runs"].append(row)
        del model
        gc.collect()
        return row

    if args.ceiling_only or args.batch1_only:
        if args.ceiling_only:
            measure("int8", int8, cores, 1, grouped, "grouped 32")
        if args.batch1_only:
            measure("int8", int8, 1, cores, one, "batch 1")
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
        return 0
    # the raw engine as the server runs it: one 1-thread session per core, and one session on every core
    measure("int8", int8, 1, cores, one, "batch 1")
    measure("int8", int8, cores, 1, one, "batch 1")
    measure("int8", int8, cores, 1, grouped, "grouped 32")
    measure("int8", int8, 1, cores, grouped, "grouped 32")
    measure("int8", int8, cores, 1, arrival, "arrival 32")
    # the seed design: one session, batch 1, every input padded to 512 tokens
    measure("int8", int8, 1, cores, one[:60], "batch 1 pad 512", pad_to=bundle.max_length)

    if args.variants:
        measure("int8", int8, 1, cores, one, "batch 1", spinning=True)
        measure("int8", int8, cores, cores, one, "batch 1")
        measure("int8", int8, cores, cores, grouped, "grouped 32")
        measure("int8", int8, 1, 1, one, "batch 1")
        measure("int8", int8, cores, 1, planned_batches(encoded, 32, 48), "batcher plan 32 (overhead 48)")
        measure("int8", int8, cores, 1, planned_batches(encoded, 32, 256), "batcher plan 32 (overhead 256)")
        measure("int8", int8, cores, 1, grouped_batches(encoded, 64), "grouped 64")
        measure("int8", int8, cores, 1, grouped_batches(encoded, 8), "grouped 8")
        measure("fp32", fp32, 1, cores, one, "batch 1")
        measure("fp32", fp32, cores, 1, grouped, "grouped 32")
        try:
            fused = build_fused_int8(fp32, args.cache_dir / "model.fused-noembed.int8.onnx")
            measure("int8-fused", fused, 1, cores, one, "batch 1")
            measure("int8-fused", fused, cores, 1, one, "batch 1")
            measure("int8-fused", fused, cores, 1, grouped, "grouped 32")
        except Exception as error:  # report, do not abort the run
            log.exception("fused variant failed")
            result["fused_error"] = f"{type(error).__name__}: {error}"

    peaks = [gemm_peak("int8", cores, 1, min(secs, 3)), gemm_peak("int8", 1, cores, min(secs, 3)),
             gemm_peak("fp32", cores, 1, min(secs, 3))]
    result["gemm"] = peaks
    int8_peak = max(p["gops"] for p in peaks if p["kind"] == "int8") * 1e9
    fp32_peak = max(p["gops"] for p in peaks if p["kind"] == "fp32") * 1e9
    result["bound_texts_per_s"] = {"int8": round(int8_peak / flops, 1), "fp32": round(fp32_peak / flops, 1)}
    for row in result["runs"]:
        peak = fp32_peak if row["variant"] == "fp32" else int8_peak
        row["of_bound"] = round(row["texts_per_s"] * flops / peak, 3)
    result["flops_check"] = {"tokens_46": round(encoder_flops(46) / 1e9, 3)}
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
