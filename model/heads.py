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


def fewshot_prototype(hypothesis: np.ndarray, examples: np.ndarray, k: float, hypothesis_center: float,
                      example_center: float) -> tuple[np.ndarray, float]:
    """A label's few-shot prototype (vector [D], bias) from its hypothesis embedding [D] and n examples [n, D].

    The text's score against it is cos(text, prototype) - bias = (1 - w) * (cos(text, h) - hypothesis_center)
    + w * (cos(text, m) - example_center), m the normalised mean of the normalised examples, w = n / (n + k):
    the hypothesis alone with no examples, the examples' mean as they grow in number. Each center is the
    cosine at which a label applies even odds (text-hypothesis cosines run lower than text-text ones), so a
    label with examples and one without are scored on one scale.
    """
    h = hypothesis / max(float(np.linalg.norm(hypothesis)), 1e-12)
    if len(examples) == 0:
        return h.astype(np.float32), float(hypothesis_center)
    e = examples / np.maximum(np.linalg.norm(examples, axis=1, keepdims=True), 1e-12)
    mean = e.mean(axis=0)
    mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    w = len(examples) / (len(examples) + k)
    return ((1.0 - w) * h + w * mean).astype(np.float32), float((1.0 - w) * hypothesis_center + w * example_center)


def fewshot_scores(text_embeddings: np.ndarray, prototypes: np.ndarray, biases: np.ndarray, temperature: float,
                   multi_label: bool, multi_label_temperature: float) -> np.ndarray:
    """Scores [N, L] against few-shot prototypes [L, D] with biases [L] (see fewshot_prototype).

    Single-label: softmax over labels of (cos - bias) / temperature. Multi-label: each label on its own,
    sigmoid((cos - bias) / multi_label_temperature), 0.5 where the label is as likely as not.
    """
    margin = text_embeddings @ prototypes.T - biases[None, :]
    if multi_label:
        return sigmoid(margin / multi_label_temperature)
    return softmax(margin / temperature)


def nli_zero_shot(logits: np.ndarray, entailment_id: int, contradiction_id: int, multi_label: bool) -> np.ndarray:
    """ModelScope's zero-shot formula on NLI logits [N, L, C] -> scores [N, L].

    Single-label (and more than one label): softmax of the entailment logits across labels. Multi-label,
    or a single candidate label: softmax over [contradiction, entailment] of each label, entailment's share.
    """
    if multi_label or logits.shape[1] == 1:
        pair = logits[..., [contradiction_id, entailment_id]]
        return softmax(pair, axis=-1)[..., 1]
    return softmax(logits[..., entailment_id], axis=-1)
