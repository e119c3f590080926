"""Tests of the quality parts of the default recipe: the reproducible MLP head and the zero-shot calibration fits."""
import numpy as np
import pytest

from senti.model.recipes.train_head import accuracy, fit_mlp, head_predict_proba, train_head
from senti.model.recipes.zeroshot_calibration import (calibrate, expected_calibration_error, fit_multi_label, fit_temperature,
                                              one_hot, split_halves)


def _blobs(n: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes on the unit sphere with a non-linear (XOR-like) boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def test_mlp_head_is_reproducible_and_learns_a_non_linear_boundary():
    import torch

    x, y = _blobs(2000)
    before = torch.get_num_threads()
    a = fit_mlp(x, y, seed=7, hidden=32, epochs=30, lr=1e-2)
    b = fit_mlp(x, y, seed=7, hidden=32, epochs=30, lr=1e-2)
    assert torch.get_num_threads() == before  # restored
    assert [w.shape for w, _ in a] == [(32, 16), (2, 32)]
    for (wa, ba), (wb, bb) in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    xt, yt = _blobs(500, seed=1)
    assert accuracy(a, xt, yt) > 0.9  # a linear model cannot do better than ~0.5 on XOR
    np.testing.assert_allclose(head_predict_proba(a, xt).sum(axis=1), 1.0, atol=1e-6)


def test_train_head_keeps_the_better_kind():
    x, y = _blobs(1500)
    xh, yh = _blobs(400, seed=2)
    result = train_head(x, y, xh, yh, seed=3, kinds=("logistic", "mlp"))
    assert set(result.candidates) == {"logistic", "mlp"}
    assert result.kind == "mlp" and result.heldout_accuracy == max(result.candidates.values())


def _cosines(n: int, labels: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrices whose gold label is drawn from softmax(cos / temperature)."""
    rng = np.random.default_rng(seed)
    cos = rng.uniform(0.70, 0.90, size=(n, labels))
    z = cos / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(labels, p=row) for row in p])
    return cos, gold


def test_fit_temperature_recovers_the_generating_temperature():
    cos, gold = _cosines(20000, 5, temperature=0.03)
    assert fit_temperature(cos, gold) == pytest.approx(0.03, rel=0.1)


def test_fit_multi_label_recovers_center_and_temperature():
    rng = np.random.default_rng(1)
    cos = rng.uniform(0.7, 0.9, size=(10000, 3))
    target = (rng.random(cos.shape) < 1 / (1 + np.exp(-(cos - 0.81) / 0.02))).astype(np.int64)
    center, temperature = fit_multi_label(cos, target)
    assert center == pytest.approx(0.81, abs=0.005) and temperature == pytest.approx(0.02, rel=0.15)


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    proba = np.array([0.75] * 400)
    correct = np.array([True] * 300 + [False] * 100)
    assert expected_calibration_error(proba, correct) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(np.array([0.95] * 400), correct) == pytest.approx(0.2, abs=1e-9)


def test_calibrate_picks_the_template_that_separates_the_labels():
    rng = np.random.default_rng(3)
    labels, dim, n = 4, 32, 800
    gold = rng.integers(0, labels, size=n)
    centers = np.linalg.qr(rng.normal(size=(dim, labels)))[0].T  # orthonormal label directions
    text = centers[gold] + 0.6 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    noisy = centers + 2.0 * rng.normal(size=centers.shape) / np.sqrt(dim)
    hypotheses = {("query: ", "good {}"): centers, ("query: ", "bad {}"): noisy / np.linalg.norm(noisy, axis=1,
                                                                                                  keepdims=True)}
    sel, conf = split_halves(n, seed=0)
    assert len(set(sel) & set(conf)) == 0 and len(sel) + len(conf) == n
    report = calibrate(text, gold, hypotheses, sel, conf)
    assert report["chosen"]["template"] == "good {}"
    assert report["confirmation"]["accuracy"] > 0.9
    assert report["chosen"]["temperature"] > 0
    np.testing.assert_array_equal(one_hot(np.array([1, 0]), 3), [[0, 1, 0], [1, 0, 0]])


def test_review_domain_rules():
    from senti.model.recipes.sentiment_data import review_domain

    assert review_domain("酒店的早餐很丰富") == "hotel"
    assert review_domain("这本书的作者写得真好") == "book"
    assert review_domain("笔记本散热不错") == "computer"
    assert review_domain("物流很快，包装完好") == "other"


def test_sentiment_direction_keeps_only_informative_pairs():
    from senti.model.recipes.train_head import sentiment_direction

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=400)
    x = rng.normal(size=(400, 8))
    x[:, 0] += np.where(y == 1, 2.0, -2.0)  # sentiment lives on axis 0
    pos = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0, 0, 0]])  # second pair is noise
    neg = np.zeros_like(pos)
    axis, acc = sentiment_direction(pos, neg, x, y)
    assert acc[0] > 0.9 and acc[1] < 0.75
    np.testing.assert_allclose(axis, pos[0])
    with pytest.raises(ValueError):
        sentiment_direction(pos[1:], neg[1:], x, y)


def test_prior_weight_is_chosen_by_leave_one_domain_out_and_folded_into_the_head():
    from senti.model.recipes.train_head import choose_mix_weights, fit_logistic, head_logits

    rng = np.random.default_rng(5)
    n = 1200
    domains = np.array(["a", "b", "c"])[rng.integers(0, 3, size=n)]
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 6))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)  # shared sentiment axis
    # a spurious, domain-specific cue: predictive inside each domain but flipping across domains
    flip = {"a": 1.0, "b": 1.0, "c": -3.0}
    x[:, 1] += np.array([flip[d] for d in domains]) * np.where(y == 1, 1.0, -1.0)
    axis = np.eye(6)[0]
    (weight, ngram_weight), scores = choose_mix_weights(x, y, domains, axis, c=1.0, seed=0, grid=(0.0, 5.0, 50.0))
    assert weight > 0 and ngram_weight == 0.0 and scores[f"{weight:g},0"] >= scores["0,0"]
    layers = fit_logistic(x, y, seed=0, c=1.0, direction=axis, weight=2.0)
    plain = fit_logistic(x, y, seed=0, c=1.0)
    # the axis is added to the binary logit: two-class logits differ by weight * (x @ axis)
    diff = (head_logits(layers, x)[:, 1] - head_logits(layers, x)[:, 0]) - \
        (head_logits(plain, x)[:, 1] - head_logits(plain, x)[:, 0])
    np.testing.assert_allclose(diff, 2.0 * x[:, 0], rtol=1e-4, atol=1e-4)


_REVIEWS = ["房间很好", "服务很好", "早餐不错", "位置很好很方便", "性价比不错", "很满意", "环境很好",
            "房间很差", "服务很差", "早餐难吃", "位置太差", "价格太贵不值", "很失望", "环境很差"]


def test_ngram_head_written_by_the_build_reproduces_scikit_learn(tmp_path):
    from senti.model.recipes.train_ngrams import NgramParams, fit_ngrams, save_ngram_head
    from senti.model.ngrams import CharNgramHead

    y = np.array([1] * 7 + [0] * 7)
    model = fit_ngrams(_REVIEWS * 3, np.tile(y, 3), seed=0, params=NgramParams(min_df=1))
    head = CharNgramHead.load(save_ngram_head(tmp_path / "ngrams.npz", model, weight=2.5))
    probes = ["这家酒店房间很好", "服务太差了", "完全无关的文字", "Ｆｕｌｌ width"]
    served = np.array([head.logits(t) for t in probes])
    np.testing.assert_allclose(served[:, 1] - served[:, 0], 2.5 * model.decision(probes), rtol=1e-5, atol=1e-5)
    assert (served[:2, 1] > served[:2, 0]).tolist() == [True, False]


def test_mix_weights_pick_ngrams_when_the_embeddings_carry_no_sentiment():
    from senti.model.recipes.train_head import choose_mix_weights, train_head

    rng = np.random.default_rng(6)
    n = 600
    y = rng.integers(0, 2, size=n)
    pos, neg = ["很好", "不错", "满意", "喜欢"], ["很差", "失望", "难吃", "太贵"]
    texts = [f"{rng.choice(['酒店', '书', '电脑'])}{rng.choice(pos if label else neg)}" for label in y]
    domains = np.array([t[:1] for t in texts])
    x = rng.normal(size=(n, 8))  # embeddings that know nothing
    axis = np.eye(8)[0]
    (w, v), scores = choose_mix_weights(x, y, domains, axis, c=1.0, seed=0, grid=(0.0, 10.0), texts=texts,
                                        ngram_grid=(0.0, 1.0, 4.0))
    assert v > 0 and scores[f"{w:g},{v:g}"] > 0.95 and scores["0,0"] < 0.7
    half = n // 2
    result = train_head(x[:half], y[:half], x[half:], y[half:], seed=0, balanced=True, prior=axis,
                        domains=domains[:half], texts=(texts[:half], texts[half:]))
    assert result.ngrams is not None and result.ngram_weight > 0 and result.heldout_accuracy > 0.95
