"""Sentiment head on frozen sentence embeddings, stored as plain numpy layers (sentiment_head.npz)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.build.sentiment_data import LABELS

# A head is a list of (w, b) with w shaped [out, in]; applied as x @ w.T + b, ReLU between
# layers, softmax at the end. The serving engine only needs numpy to run it.
Layers = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class HeadResult:
    """Trained head plus what bundle.json records about it."""

    layers: Layers
    kind: str
    heldout_accuracy: float
    candidates: dict[str, float] = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def head_logits(layers: Layers, x: np.ndarray) -> np.ndarray:
    """Raw class scores (pre-softmax) for a batch of embeddings."""
    h = np.asarray(x, dtype=np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def head_predict_proba(layers: Layers, x: np.ndarray) -> np.ndarray:
    """Softmax class probabilities in LABELS order."""
    z = head_logits(layers, x)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _binary_to_two_class(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's single binary logit z becomes two logits (-z/2, z/2): softmax of them equals sigmoid(z)."""
    w = np.asarray(w, dtype=np.float32).reshape(1, -1)
    b = np.asarray(b, dtype=np.float32).reshape(1)
    return np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int, c: float = 10.0) -> Layers:
    """L2-regularised logistic regression with inverse strength `c`."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(x, y)
    return [_binary_to_two_class(clf.coef_, clf.intercept_)]


def choose_logistic_c(x: np.ndarray, y: np.ndarray, seed: int,
                      grid: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)) -> tuple[float, dict[float, float]]:
    """Picks C by stratified k-fold accuracy on training data (held-out split stays untouched)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed)
    scores = {c: float(cross_val_score(LogisticRegression(C=c, max_iter=2000, random_state=seed),
                                       x, y, cv=cv, n_jobs=1).mean()) for c in grid}
    return max(scores, key=scores.get), scores


def fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 256, alpha: float = 1e-3) -> Layers:
    """One-hidden-layer ReLU MLP (adam, early stopping on a slice of the training split)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=200, early_stopping=True,
                        validation_fraction=0.1, n_iter_no_change=10, random_state=seed)
    clf.fit(x, y)
    layers: Layers = [(clf.coefs_[0].T.astype(np.float32), clf.intercepts_[0].astype(np.float32))]
    layers.append(_binary_to_two_class(clf.coefs_[1].T, clf.intercepts_[1]))
    return layers


def accuracy(layers: Layers, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of argmax predictions equal to y (class index in LABELS order)."""
    return float((head_logits(layers, x).argmax(axis=1) == y).mean()) if len(y) else 0.0


def labels_to_index(labels: list[str]) -> np.ndarray:
    """'negative'/'positive' -> 0/1 following LABELS."""
    idx = {name: i for i, name in enumerate(LABELS)}
    return np.array([idx[label] for label in labels], dtype=np.int64)


def train_head(x_train: np.ndarray, y_train: np.ndarray, x_heldout: np.ndarray, y_heldout: np.ndarray,
               seed: int, kinds: tuple[str, ...] = ("logistic",)) -> HeadResult:
    """Trains each requested head kind; keeps the best one by held-out accuracy."""
    results: dict[str, tuple[Layers, dict]] = {}
    if "logistic" in kinds:
        c, cv = choose_logistic_c(x_train, y_train, seed)
        results["logistic"] = (fit_logistic(x_train, y_train, seed, c), {"C": c, "cv_accuracy": cv})
    if "mlp" in kinds:
        results["mlp"] = (fit_mlp(x_train, y_train, seed), {"hidden": 256, "alpha": 1e-3})
    acc = {k: accuracy(layers, x_heldout, y_heldout) for k, (layers, _) in results.items()}
    best = max(acc, key=lambda k: (acc[k], k == "logistic"))  # ties go to the simpler head
    return HeadResult(results[best][0], best, acc[best], acc, results[best][1])


def save_head(path: Path, layers: Layers) -> Path:
    """Writes w0, b0, w1, b1, ... (float32) to an .npz file."""
    arrays = {}
    for i, (w, b) in enumerate(layers):
        arrays[f"w{i}"] = np.ascontiguousarray(w, dtype=np.float32)
        arrays[f"b{i}"] = np.ascontiguousarray(b, dtype=np.float32)
    with open(path, "wb") as fh:  # file handle: np.savez would append ".npz" to a bare name
        np.savez(fh, **arrays)
    return Path(path)


def load_head(path: Path) -> Layers:
    """Reads the layers written by save_head."""
    with np.load(path) as z:
        n = sum(1 for k in z.files if k.startswith("w"))
        return [(z[f"w{i}"], z[f"b{i}"]) for i in range(n)]
