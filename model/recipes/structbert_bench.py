"""Times a StructBERT-base-shaped bundle (random weights) with onnxruntime: fp32 vs INT8; prints JSON.

Usage: python -m senti.model.recipes.structbert_bench [--work DIR] [--threads 2] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Common characters for synthetic reviews; all fall inside the base-shaped vocab's CJK range.
_CHARS = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
          "服务态度很好物流快质量差非常失望推荐购买东西包装便宜贵喜欢讨厌糟糕退货漂亮舒适电影剧情演员")


def _texts(n: int, lo: int = 30, hi: int = 60, seed: int = 0) -> list[str]:
    """n pseudo-Chinese texts of lo..hi characters, with some punctuation."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars = [rng.choice(_CHARS) for _ in range(rng.randint(lo, hi))]
        for i in range(8, len(chars), rng.randint(8, 14)):
            chars[i] = rng.choice("，。！？")
        out.append("".join(chars))
    return out


def _session(path: Path, threads: int):
    """CPU session with a fixed thread count (the build machine is shared)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _feeds(tokenizer_path: Path, texts: list[str]) -> dict:
    """Tokenized, per-batch padded int64 inputs."""
    from tokenizers import Tokenizer

    enc = Tokenizer.from_file(str(tokenizer_path)).encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}


def _latency_ms(sess, feeds: list[dict], runs: int) -> dict:
    """Batch-1 latency percentiles over `runs` calls cycling through single-text feeds."""
    for f in feeds[:3]:
        sess.run(None, f)  # warm-up: first runs allocate arenas
    times = []
    for i in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds[i % len(feeds)])
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50": round(statistics.median(times), 2), "p95": round(times[int(0.95 * (len(times) - 1))], 2),
            "mean": round(statistics.fmean(times), 2)}


def _throughput(sess, feed: dict, repeats: int) -> float:
    """Texts per second for one padded batch, best of `repeats` (least disturbed by neighbours)."""
    sess.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return round(feed["input_ids"].shape[0] / best, 1)


def _bench_model(path: Path, tok: Path, threads: int, runs: int, batches: tuple[int, ...]) -> dict:
    """Latency + throughput for one ONNX file."""
    sess = _session(path, threads)
    singles = [_feeds(tok, [t]) for t in _texts(20, seed=1)]
    result = {"size_mb": round(path.stat().st_size / 2**20, 1),
              "batch1_latency_ms": _latency_ms(sess, singles, runs)}
    for b in batches:
        result[f"batch{b}_texts_per_s"] = _throughput(sess, _feeds(tok, _texts(b, seed=b)), repeats=3)
    return result


def _argmax_agreement(bundle: Path, threads: int) -> float:
    """Fraction of 64 texts where INT8 and fp32 pick the same class."""
    feed = _feeds(bundle / "tokenizer.json", _texts(64, seed=7))
    a = _session(bundle / "model.fp32.onnx", threads).run(None, feed)[0].argmax(-1)
    b = _session(bundle / "model.onnx", threads).run(None, feed)[0].argmax(-1)
    return float((a == b).mean())


def main(argv: list[str] | None = None) -> int:
    """Builds (or reuses) the base-shaped bundle in --work and prints the timing JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for checkpoint + bundle (default: temp)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from tests.structbert_checkpoints import make_structbert_base_shape_checkpoint

    from .structbert import build_structbert_bundle

    work = args.work or Path(tempfile.mkdtemp(prefix="structbert-bench-"))
    ckpt, bundle = work / "nlp_structbert_sentiment-classification_chinese-base", work / "bundle"
    report: dict = {"threads": args.threads}
    if not (bundle / "bundle.json").is_file():
        t = time.perf_counter()
        make_structbert_base_shape_checkpoint(ckpt)
        report["checkpoint_write_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        build_structbert_bundle(str(ckpt), bundle, progress=True)
        report["bundle_build_s"] = round(time.perf_counter() - t, 1)
    tok = bundle / "tokenizer.json"
    report["fp32"] = _bench_model(bundle / "model.fp32.onnx", tok, args.threads, args.runs, (16, 32))
    report["int8"] = _bench_model(bundle / "model.onnx", tok, args.threads, args.runs, (16, 32))
    report["int8_fp32_argmax_agreement"] = _argmax_agreement(bundle, args.threads)
    report["bundle_files_mb"] = {p.name: round(p.stat().st_size / 2**20, 2) for p in sorted(bundle.iterdir())}
    report["work"] = str(work)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
