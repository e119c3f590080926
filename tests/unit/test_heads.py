"""Sentiment heads and zero-shot formulas against direct computations."""
import numpy as np
import pytest

from senti.model.heads import DenseHead, cosine_zero_shot, nli_zero_shot, softmax


def test_softmax_is_stable_and_sums_to_one():
    out = softmax(np.array([[1000.0, 1001.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[1], [0.5, 0.5])


def test_logistic_head_matches_the_formula(tmp_path):
    w, b = np.array([[1.0, -2.0], [0.5, 0.25]]), np.array([0.1, -0.1])
    np.savez(tmp_path / "head.npz", w0=w, b0=b)
    head = DenseHead.load(tmp_path / "head.npz")
    x = np.array([[0.3, 0.7]])
    logits = x @ w.T + b
    np.testing.assert_allclose(head(x), np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)
    assert head.num_classes == 2


def test_mlp_head_applies_relu_between_layers(tmp_path):
    w0, b0 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), np.zeros(3)
    w1, b1 = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), np.zeros(2)
    np.savez(tmp_path / "mlp.npz", w0=w0, b0=b0, w1=w1, b1=b1)
    x = np.array([[2.0, -1.0]])
    hidden = np.maximum(x @ w0.T, 0)
    expected = softmax(hidden @ w1.T)
    np.testing.assert_allclose(DenseHead.load(tmp_path / "mlp.npz")(x), expected, rtol=1e-6)


def test_cosine_zero_shot_single_and_multi_label():
    texts = np.array([[1.0, 0.0]])
    labels = np.array([[1.0, 0.0], [0.0, 1.0]])
    single = cosine_zero_shot(texts, labels, temperature=0.5, multi_label=False, multi_label_center=0.5)
    np.testing.assert_allclose(single, softmax(np.array([[2.0, 0.0]])))
    multi = cosine_zero_shot(texts, labels, temperature=0.5, multi_label=True, multi_label_center=0.5)
    np.testing.assert_allclose(multi, 1 / (1 + np.exp(-np.array([[1.0, -1.0]]))))


def test_cosine_zero_shot_multi_label_has_its_own_temperature():
    texts = np.array([[1.0, 0.0]])
    labels = np.array([[1.0, 0.0], [0.0, 1.0]])
    multi = cosine_zero_shot(texts, labels, temperature=0.5, multi_label=True, multi_label_center=0.5,
                             multi_label_temperature=0.25)
    np.testing.assert_allclose(multi, 1 / (1 + np.exp(-np.array([[2.0, -2.0]]))))
    single = cosine_zero_shot(texts, labels, temperature=0.5, multi_label=False, multi_label_center=0.5,
                              multi_label_temperature=0.25)  # single-label ignores it
    np.testing.assert_allclose(single, softmax(np.array([[2.0, 0.0]])))


def modelscope_reference(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """ModelScope's ZeroShotClassificationPipeline.postprocess, written out per text."""
    entail, contra = 0, 2
    out = []
    for per_text in logits:
        if multi_label or len(per_text) == 1:
            pair = per_text[:, [contra, entail]]
            out.append(np.exp(pair[:, 1]) / np.exp(pair).sum(axis=1))
        else:
            e = per_text[:, entail]
            out.append(np.exp(e) / np.exp(e).sum())
    return np.array(out)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_nli_zero_shot_matches_modelscope(multi_label, num_labels):
    logits = np.random.default_rng(0).normal(size=(2, num_labels, 3))
    np.testing.assert_allclose(nli_zero_shot(logits, 0, 2, multi_label), modelscope_reference(logits, multi_label),
                               rtol=1e-6)


def test_fewshot_prototype_mixes_hypothesis_and_examples_by_count():
    from senti.model.heads import fewshot_prototype, fewshot_scores, sigmoid
    rng = np.random.default_rng(0)
    h = rng.normal(size=8)
    examples = rng.normal(size=(3, 8))
    # no examples: the (normalised) hypothesis and the hypothesis center
    vector, bias = fewshot_prototype(h, np.zeros((0, 8)), 8.0, 0.8, 0.9)
    np.testing.assert_allclose(vector, h / np.linalg.norm(h), rtol=1e-6)
    assert bias == pytest.approx(0.8)
    # n examples: normalise each, average, normalise; mix vector and center with w = n / (n + k)
    e = examples / np.linalg.norm(examples, axis=1, keepdims=True)
    mean = e.mean(axis=0) / np.linalg.norm(e.mean(axis=0))
    w = 3 / (3 + 2.0)
    vector, bias = fewshot_prototype(h, examples, 2.0, 0.8, 0.9)
    np.testing.assert_allclose(vector, (1 - w) * h / np.linalg.norm(h) + w * mean, rtol=1e-5)
    assert bias == pytest.approx((1 - w) * 0.8 + w * 0.9)
    # the score is the mix of the two margins
    t = rng.normal(size=(1, 8))
    t /= np.linalg.norm(t)
    margin = (1 - w) * (t @ h / np.linalg.norm(h) - 0.8) + w * (t @ mean - 0.9)
    got = fewshot_scores(t, vector[None], np.array([bias]), 0.01, True, 0.05)
    np.testing.assert_allclose(got[0], sigmoid(margin / 0.05), rtol=1e-5)
    # k = 0: the examples' mean direction alone
    np.testing.assert_allclose(fewshot_prototype(h, examples, 0.0, 0.8, 0.9)[0], mean, rtol=1e-5)
