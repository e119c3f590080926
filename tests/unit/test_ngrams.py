"""Character n-gram features and the n-gram head against direct computations."""
import math

import numpy as np
import pytest

from senti.model.ngrams import CharNgramHead, char_ngrams, ngram_keys, vocab_keys


def test_char_ngrams_lowercase_and_collapse_whitespace():
    assert char_ngrams("Ab \t c", 2) == ["a", "b", " ", "c", "ab", "b ", " c"]
    assert char_ngrams("好", 3) == ["好"]
    assert char_ngrams("", 2) == []


@pytest.mark.parametrize("max_n", [1, 2, 3])
def test_integer_keys_follow_the_string_ngrams_one_to_one(max_n):
    text = "Ａ好\t\n 好😀😀aB\x00、İ"
    grams = char_ngrams(text, max_n)
    keys = ngram_keys(text, max_n)
    assert len(keys) == len(grams)
    by_gram = {}
    for gram, key in zip(grams, keys.tolist()):
        assert by_gram.setdefault(gram, key) == key  # a gram always gets the same key
    # and the vocabulary keys it the same way
    assert vocab_keys(list(by_gram), max_n).tolist() == list(by_gram.values())
    assert len(set(by_gram.values())) == len(by_gram)  # different grams, different keys
    with pytest.raises(ValueError, match="int64"):
        ngram_keys(text, 4)


def _save(path, vocab, idf, weights, bias, max_n=2):
    np.savez(path, vocab=np.array(vocab, dtype=str), idf=np.array(idf, dtype=np.float32),
             weights=np.array(weights, dtype=np.float32), bias=np.array(bias, dtype=np.float32),
             max_n=np.int64(max_n))
    return CharNgramHead.load(path)


def test_logits_are_sublinear_tfidf_l2_normalised_dot_weights(tmp_path):
    head = _save(tmp_path / "h.npz", ["好", "差", "好好"], [1.0, 2.0, 3.0],
                 [[0.0, 1.0, 0.0], [2.0, 0.0, 4.0]], [0.5, -0.5])
    # "好好差": 好 x2, 差 x1, 好好 x1, 好差 (not in the vocabulary)
    x = np.array([(1 + math.log(2)) * 1.0, 1.0 * 2.0, 1.0 * 3.0])
    x /= np.linalg.norm(x)
    want = np.array([x[1] + 0.5, 2 * x[0] + 4 * x[2] - 0.5])
    np.testing.assert_allclose(head.logits("好好差"), want, rtol=1e-6)
    assert head.num_classes == 2


def test_a_text_without_known_ngrams_gets_the_bias(tmp_path):
    head = _save(tmp_path / "h.npz", ["好"], [1.0], [[0.0], [1.0]], [0.25, -0.25])
    np.testing.assert_allclose(head.logits("xyz"), [0.25, -0.25])
    np.testing.assert_allclose(head.logits(""), [0.25, -0.25])


def test_mismatched_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="disagree"):
        _save(tmp_path / "h.npz", ["好", "差"], [1.0], [[0.0, 1.0], [1.0, 0.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="empty"):
        _save(tmp_path / "h.npz", [], [], np.zeros((2, 0)), [0.0, 0.0])
