"""Post-processing of model outputs: sentiment heads and zero-shot scoring formulas."""
from pathlib import Path

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


class DenseHead:
    """A small MLP (or logistic regression, one layer) on the sentence embedding, stored as w0,b0,w1,b1,..."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]]):
        if not weights:
            raise ValueError("a head needs at least one layer")
        self.layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]

    @classmethod
    def load(cls, path: Path) -> "DenseHead":
        """Reads w0, b0, w1, b1, ... from an .npz file."""
        with np.load(path) as data:
            count = sum(1 for key in data.files if key.startswith("w"))
            return cls([(data[f"w{i}"], data[f"b{i}"]) for i in range(count)])

    @property
    def num_classes(self) -> int:
        """Width of the last layer."""
        return self.layers[-1][0].shape[0]

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Class logits [N, C] for embeddings [N, D]."""
        x = embeddings.astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return x

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] for embeddings [N, D]."""
        return softmax(self.logits(embeddings))


def cosine_zero_shot(text_embeddings: np.ndarray, label_embeddings: np.ndarray, temperature: float,
                     multi_label: bool, multi_label_center: float,
                     multi_label_temperature: float | None = None) -> np.ndarray:
    """Scores [N, L] from cosine similarity of L2-normalised embeddings.

    Single-label: softmax over labels of cosine / temperature. Multi-label: each label on its own,
    sigmoid((cosine - center) / multi_label_temperature), so a label scores 0.5 at the calibrated
    center; multi_label_temperature defaults to temperature (bundles that calibrate only one).
    """
    cosine = text_embeddings @ label_embeddings.T
    if multi_label:
        scale = temperature if multi_label_temperature is None else multi_label_temperature
        return sigmoid((cosine - multi_label_center) / scale)
    return softmax(cosine / temperature)


def nli_zero_shot(logits: np.ndarray, entailment_id: int, contradiction_id: int, multi_label: bool) -> np.ndarray:
    """ModelScope's zero-shot formula on NLI logits [N, L, C] -> scores [N, L].

    Single-label (and more than one label): softmax of the entailment logits across labels. Multi-label,
    or a single candidate label: softmax over [contradiction, entailment] of each label, entailment's share.
    """
    if multi_label or logits.shape[1] == 1:
        pair = logits[..., [contradiction_id, entailment_id]]
        return softmax(pair, axis=-1)[..., 1]
    return softmax(logits[..., entailment_id], axis=-1)
