"""Character n-gram sentiment features: the analyzer shared by training and serving, and the head that scores them."""
import re
from pathlib import Path

import numpy as np

_SPACES = re.compile(r"\s+")
# An n-gram is keyed as a number whose base-_BASE digits are its 1-based code points, so n-grams of every
# length get distinct int64 keys (_BASE ** 3 < 2 ** 63): lookups are one sorted-array search per text.
_BASE = 0x110001
MAX_N = 3


def normalize(text: str) -> str:
    """Lower case, runs of whitespace read as one space: what the n-grams are taken from."""
    return _SPACES.sub(" ", text.lower())


def char_ngrams(text: str, max_n: int) -> list[str]:
    """Every character 1..max_n-gram of the normalised text.

    The build fits its TF-IDF vocabulary with this very function (as scikit-learn's analyzer), and
    the server keys the same n-grams with ngram_keys, so the served features are the trained ones.
    """
    text = normalize(text)
    return [text[i:i + n] for n in range(1, max_n + 1) for i in range(len(text) - n + 1)]


def _check_max_n(max_n: int) -> None:
    if not 1 <= max_n <= MAX_N:
        raise ValueError(f"n-grams up to {MAX_N} characters fit an int64 key, got max_n={max_n}")


def ngram_keys(text: str, max_n: int) -> np.ndarray:
    """int64 key of every n-gram that char_ngrams(text, max_n) lists, in the same order."""
    _check_max_n(max_n)
    digits = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32).astype(np.int64) + 1
    keys, longer = [digits], digits
    for n in range(2, max_n + 1):
        longer = longer[:-1] * _BASE + digits[n - 1:]
        keys.append(longer)
    return np.concatenate(keys)


def vocab_keys(vocab: list[str], max_n: int) -> np.ndarray:
    """The int64 key of each vocabulary n-gram (as char_ngrams made them: already normalised), all at once."""
    _check_max_n(max_n)
    lengths = np.fromiter(map(len, vocab), dtype=np.int64, count=len(vocab))
    if len(vocab) and lengths.max() > max_n:
        raise ValueError(f"a vocabulary n-gram is longer than max_n={max_n}")
    # fixed-width UTF-32: column j holds character j (0 past the end; the lengths tell padding from NUL)
    codes = np.array(vocab, dtype=f"<U{max_n}").view(np.uint32).reshape(len(vocab), max_n).astype(np.int64)
    keys = np.zeros(len(vocab), dtype=np.int64)
    for j in range(max_n):
        keys = np.where(j < lengths, keys * _BASE + codes[:, j] + 1, keys)
    return keys


class CharNgramHead:
    """Linear class logits on L2-normalised sublinear TF-IDF character n-grams (sentiment_ngrams.npz).

    The file holds `vocab` [V] (str), `idf` [V], `weights` [C, V], `bias` [C] and `max_n`; the logits
    are added to the embedding head's, with the mixing weight already folded into `weights` and `bias`.
    """

    def __init__(self, vocab: list[str], idf: np.ndarray, weights: np.ndarray, bias: np.ndarray, max_n: int):
        if not vocab or len(vocab) != len(idf) or weights.shape != (len(bias), len(vocab)):
            raise ValueError("n-gram head arrays are empty or disagree in size")
        keys = vocab_keys(vocab, max_n)
        order = np.argsort(keys)
        self.keys = keys[order]
        self.idf = idf.astype(np.float64)[order]
        self.weights = np.ascontiguousarray(weights.T[order], dtype=np.float64)  # [V, C]
        self.bias = bias.astype(np.float64)
        self.max_n = max_n

    @classmethod
    def load(cls, path: Path) -> "CharNgramHead":
        """Reads the arrays written by senti.model.recipes.train_ngrams.save_ngram_head."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["vocab"].tolist(), data["idf"], data["weights"], data["bias"], int(data["max_n"]))

    @property
    def num_classes(self) -> int:
        """Number of logits per text."""
        return len(self.bias)

    def logits(self, text: str) -> np.ndarray:
        """Class logits [C] of one text; a text with no known n-gram gets the bias alone."""
        keys, counts = np.unique(ngram_keys(text, self.max_n), return_counts=True)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[at] == keys
        if not found.any():
            return self.bias.copy()
        ids = at[found]
        x = (1.0 + np.log(counts[found])) * self.idf[ids]
        x /= np.sqrt(x @ x)
        return x @ self.weights[ids] + self.bias
