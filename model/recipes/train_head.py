"""Sentiment head on frozen sentence embeddings, stored as plain numpy layers (sentiment_head.npz)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from senti.model.recipes.sentiment_data import LABELS

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
    ngrams: object = None  # train_ngrams.NgramModel whose logit is added with ngram_weight, or None
    ngram_weight: float = 0.0


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


def binary_to_two_class(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's single binary logit z becomes two logits (-z/2, z/2): softmax of them equals sigmoid(z)."""
    w = np.asarray(w, dtype=np.float32).reshape(1, -1)
    b = np.asarray(b, dtype=np.float32).reshape(1)
    return np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])


def _logistic(c: float, seed: int, balanced: bool):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, random_state=seed, class_weight="balanced" if balanced else None)


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int, c: float = 10.0, balanced: bool = False,
                 direction: np.ndarray | None = None, weight: float = 0.0,
                 sample_weight: np.ndarray | None = None) -> Layers:
    """L2-regularised logistic regression with inverse strength `c`, plus `weight` x `direction` on its logit.

    balanced weighs both classes equally (the prior of the texts a server will see is unknown);
    direction is a fixed sentiment axis (see sentiment_direction) added to the learnt weights;
    sample_weight (one per row, None: all 1) weighs rows in the loss, on top of the class weights.
    """
    clf = _logistic(c, seed, balanced).fit(x, y, sample_weight=sample_weight)
    coef = clf.coef_.astype(np.float64)
    if direction is not None and weight:
        coef = coef + weight * np.asarray(direction, dtype=np.float64).reshape(1, -1)
    return [binary_to_two_class(coef, clf.intercept_)]


def choose_logistic_c(x: np.ndarray, y: np.ndarray, seed: int,
                      grid: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0),
                      balanced: bool = False,
                      sample_weight: np.ndarray | None = None) -> tuple[float, dict[float, float]]:
    """Picks C by stratified k-fold accuracy on training data (held-out split stays untouched).

    sample_weight weighs the rows of each fold's fit (the folds' accuracy counts every row once).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed)
    params = {"sample_weight": sample_weight} if sample_weight is not None else None
    scores = {c: float(cross_val_score(_logistic(c, seed, balanced), x, y, cv=cv, n_jobs=1, params=params).mean())
              for c in grid}
    return max(scores, key=scores.get), scores


def sentiment_direction(positive: np.ndarray, negative: np.ndarray, x: np.ndarray, y: np.ndarray,
                        min_accuracy: float = 0.75) -> tuple[np.ndarray, list[float]]:
    """Zero-shot sentiment axis: mean of (positive - negative) prototype embeddings [P, D].

    A pair is kept when the sign of x @ (pos - neg) alone labels the training texts with at least
    min_accuracy (some phrasings, e.g. a bare 好评/差评, carry little signal). Returns the axis and each
    pair's accuracy.
    """
    diffs = np.asarray(positive, dtype=np.float64) - np.asarray(negative, dtype=np.float64)
    acc = [float(((x @ d > 0).astype(np.int64) == y).mean()) for d in diffs]
    kept = [d for d, a in zip(diffs, acc) if a >= min_accuracy]
    if not kept:
        raise ValueError("no sentiment prototype pair reaches the minimum accuracy")
    return np.mean(kept, axis=0), acc


PRIOR_GRID = (0.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0)
NGRAM_GRID = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
TIE_TOLERANCE = 5e-4  # 0.05 points of mean accuracy, about 8 of the 15,627 training texts: no evidence either way


def choose_mix_weights(x: np.ndarray, y: np.ndarray, domains: np.ndarray, direction: np.ndarray, c: float,
                       seed: int, balanced: bool = False, grid: tuple[float, ...] = PRIOR_GRID,
                       texts: list[str] | None = None,
                       ngram_grid: tuple[float, ...] = (0.0,),
                       sample_weight: np.ndarray | None = None) -> tuple[tuple[float, float], dict[str, float]]:
    """Weights of the zero-shot axis and of the character n-gram logit that maximise leave-one-domain-out accuracy.

    For every review domain, a logistic regression on the embeddings (and, given `texts`, one on
    character n-grams) is fitted on the other domains and scored on that one: the mean over domains
    estimates accuracy on reviews of a kind the corpus does not cover, which is what a default model
    meets. Returns (axis weight, n-gram weight) and the score of every pair ("axis,ngram"); pairs within
    TIE_TOLERANCE of the best count as ties, and ties go to the smaller weights. sample_weight weighs the
    rows of the fits (each domain's accuracy counts every row once).
    """
    from senti.model.recipes.train_ngrams import fit_ngrams

    domains = np.asarray(domains)
    pairs = [(w, v) for w in grid for v in (ngram_grid if texts is not None else (0.0,))]
    per_domain = []
    for d in sorted(set(domains.tolist())):
        train, test = domains != d, domains == d
        w = sample_weight[train] if sample_weight is not None else None
        clf = _logistic(c, seed, balanced).fit(x[train], y[train], sample_weight=w)
        base, axis = clf.decision_function(x[test]), x[test] @ direction
        ngram = np.zeros_like(base)
        if texts is not None:
            model = fit_ngrams([t for t, keep in zip(texts, train) if keep], y[train], seed, sample_weight=w)
            ngram = model.decision([t for t, keep in zip(texts, test) if keep])
        per_domain.append({p: float((((base + p[0] * axis + p[1] * ngram) > 0).astype(np.int64) == y[test]).mean())
                           for p in pairs})
    scores = {p: float(np.mean([s[p] for s in per_domain])) for p in pairs}
    # the surface is flat near its top: within TIE_TOLERANCE of the best, the smallest weights win
    top = max(scores.values())
    best = min(p for p in pairs if scores[p] >= top - TIE_TOLERANCE)
    return best, {f"{w:g},{v:g}": round(s, 5) for (w, v), s in scores.items()}


MLP_PARAMS = {"hidden": 256, "epochs": 40, "lr": 2e-3, "weight_decay": 1e-2, "dropout": 0.1, "batch_size": 128}


def fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 256, epochs: int = 40, lr: float = 2e-3,
            weight_decay: float = 1e-2, dropout: float = 0.1, batch_size: int = 128) -> Layers:
    """One-hidden-layer ReLU MLP trained with torch (AdamW, one-cycle schedule, dropout), reproducibly.

    One intra-op thread, a seeded generator for the shuffles and a forked global RNG for the initial
    weights and dropout: the same inputs and seed give the same weights whatever the machine's core
    count (sklearn's MLPClassifier was measured to move 1 point between 1 and 2 BLAS threads).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                      torch.nn.Dropout(dropout), torch.nn.Linear(hidden, len(LABELS)))
            xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
            steps_per_epoch = (len(xs) + batch_size - 1) // batch_size
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
            net.train()
            for _ in range(epochs):
                order = torch.randperm(len(xs), generator=gen)
                for i in range(0, len(xs), batch_size):
                    idx = order[i:i + batch_size]
                    loss = torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
            net.eval()
    finally:
        torch.set_num_threads(threads)
    first, second = net[1], net[4]
    return [(first.weight.detach().numpy().astype(np.float32), first.bias.detach().numpy().astype(np.float32)),
            (second.weight.detach().numpy().astype(np.float32), second.bias.detach().numpy().astype(np.float32))]


def accuracy(layers: Layers, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of argmax predictions equal to y (class index in LABELS order)."""
    return float((head_logits(layers, x).argmax(axis=1) == y).mean()) if len(y) else 0.0


def labels_to_index(labels: list[str]) -> np.ndarray:
    """'negative'/'positive' -> 0/1 following LABELS."""
    idx = {name: i for i, name in enumerate(LABELS)}
    return np.array([idx[label] for label in labels], dtype=np.int64)


def train_head(x_train: np.ndarray, y_train: np.ndarray, x_heldout: np.ndarray, y_heldout: np.ndarray,
               seed: int, kinds: tuple[str, ...] = ("logistic",), *, balanced: bool = False,
               prior: np.ndarray | None = None, domains: np.ndarray | None = None,
               texts: tuple[list[str], list[str]] | None = None,
               sample_weight: np.ndarray | None = None) -> HeadResult:
    """Trains each requested head kind; keeps the best one by held-out accuracy.

    With `prior` (a zero-shot sentiment axis) and `domains` (a review domain per training text), the
    logistic head gets prior x a weight chosen by leave-one-domain-out accuracy on the training split;
    with `texts` (training and held-out texts) too, a character n-gram model joins it, its weight
    chosen the same way, and its logit is added to the head's (result.ngrams, result.ngram_weight).
    sample_weight (one per training row) weighs the rows of every logistic fit (not the MLP's).
    """
    results: dict[str, tuple[Layers, dict]] = {}
    ngrams, ngram_weight = None, 0.0
    if "logistic" in kinds:
        c, cv = choose_logistic_c(x_train, y_train, seed, balanced=balanced, sample_weight=sample_weight)
        params: dict = {"C": c, "cv_accuracy": cv, "class_weight": "balanced" if balanced else None}
        weight = 0.0
        if prior is not None:
            if domains is None:
                raise ValueError("a prior axis needs domains to choose its weight")
            (weight, ngram_weight), lodo = choose_mix_weights(
                x_train, y_train, domains, prior, c, seed, balanced, texts=texts[0] if texts else None,
                ngram_grid=NGRAM_GRID, sample_weight=sample_weight)
            params.update(prior_weight=weight, leave_one_domain_out_accuracy=lodo)
        results["logistic"] = (fit_logistic(x_train, y_train, seed, c, balanced, prior, weight, sample_weight), params)
        if ngram_weight:
            from senti.model.recipes.train_ngrams import NgramParams, fit_ngrams

            ngrams = fit_ngrams(texts[0], y_train, seed, sample_weight=sample_weight)
            params.update(ngram_weight=ngram_weight, ngram_params=vars(NgramParams()),
                          ngram_features=len(ngrams.vectorizer.vocabulary_))
    if "mlp" in kinds:
        results["mlp"] = (fit_mlp(x_train, y_train, seed, **MLP_PARAMS), dict(MLP_PARAMS))
    acc = {k: accuracy(layers, x_heldout, y_heldout) for k, (layers, _) in results.items()}
    if ngrams is not None:
        mixed = head_logits(results["logistic"][0], x_heldout)
        mixed = (mixed[:, 1] - mixed[:, 0]) + ngram_weight * ngrams.decision(texts[1])
        acc["logistic"] = float(((mixed > 0).astype(np.int64) == y_heldout).mean())
    best = max(acc, key=lambda k: (acc[k], k == "logistic"))  # ties go to the simpler head
    if best != "logistic":
        ngrams, ngram_weight = None, 0.0
    return HeadResult(results[best][0], best, acc[best], acc, results[best][1], ngrams, ngram_weight)


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
