"""Plain result types the engine returns; the transport converts them to protobuf."""
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Encoded:
    """Token ids of one input, ready to batch."""

    ids: np.ndarray
    type_ids: np.ndarray
    truncated: bool

    @property
    def length(self) -> int:
        """Number of tokens."""
        return len(self.ids)


@dataclass
class Timing:
    """Where the time of a request went, in microseconds."""

    tokenize_us: int = 0
    queue_us: int = 0
    inference_us: int = 0
    total_us: int = 0
    batch_size: int = 0
    cache_hits: int = 0

    def add(self, other: "Timing") -> None:
        """Accumulates another item's timing into this one (sums, and the largest batch)."""
        self.tokenize_us += other.tokenize_us
        self.queue_us += other.queue_us
        self.inference_us += other.inference_us
        self.batch_size = max(self.batch_size, other.batch_size)
        self.cache_hits += other.cache_hits


@dataclass(frozen=True)
class Sentiment:
    """Sentiment of one text: the top label and every label's probability in model order."""

    label: str
    score: float
    scores: tuple[tuple[str, float], ...]
    truncated: bool
    tokens: int
    timing: Timing = field(default_factory=Timing, compare=False)


@dataclass(frozen=True)
class ZeroShot:
    """Zero-shot result of one text: (label, score) pairs sorted by score, highest first."""

    labels: tuple[tuple[str, float], ...]
    truncated: bool
    timing: Timing = field(default_factory=Timing, compare=False)


NEGATIVE_LABELS = frozenset({"negative", "neg", "负面", "消极", "差评"})
POSITIVE_LABELS = frozenset({"positive", "pos", "正面", "积极", "好评"})


def polarity(label: str) -> str | None:
    """'negative' or 'positive' for the sentiment label names models use, else None."""
    name = label.strip().lower()
    if name in NEGATIVE_LABELS:
        return "negative"
    if name in POSITIVE_LABELS:
        return "positive"
    return None
