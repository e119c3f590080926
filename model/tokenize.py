"""Text -> token ids with the bundle's tokenizer, truncating to the model's max length."""
from pathlib import Path
from typing import Protocol

import numpy as np

from .bundle import Bundle
from .types import Encoded

PAD_TOKENS = ("<pad>", "[PAD]")


class TextTokenizer(Protocol):
    """What the engine needs from a tokenizer."""

    max_length: int
    pad_id: int

    def encode_batch(self, texts: list[str], pairs: list[str] | None = None,
                     prefix: str | None = None) -> list[Encoded]: ...


class HfTokenizer:
    """A `tokenizers` tokenizer.json: adds the model's text prefix and flags truncated inputs."""

    def __init__(self, tokenizer_json: Path, max_length: int, prefix: str = ""):
        from tokenizers import Tokenizer

        self.max_length = max_length
        self.prefix = prefix
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        # Truncation in Rust keeps the special tokens; `overflowing` tells us it happened.
        self._tok.enable_truncation(max_length)
        self.pad_id = next((i for t in PAD_TOKENS if (i := self._tok.token_to_id(t)) is not None), 0)

    def encode_batch(self, texts: list[str], pairs: list[str] | None = None,
                     prefix: str | None = None) -> list[Encoded]:
        """Encodes texts (or text/pair tuples) in one call; the prefix (default: the model's) goes on texts only."""
        prefix = self.prefix if prefix is None else prefix
        firsts = [prefix + t for t in texts]
        inputs = list(zip(firsts, pairs)) if pairs is not None else firsts
        return [
            Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64), bool(e.overflowing))
            for e in self._tok.encode_batch(inputs)
        ]


class SentencePieceTokenizer:
    """A SentencePiece Unigram model with `<s> ... </s>` around each text (XLM-R / e5 layout).

    Same ids as the bundle's tokenizer.json at a fifth of the memory (see model/recipes/sentencepiece_model.py).
    """

    def __init__(self, model_file: Path, max_length: int, prefix: str = ""):
        import sentencepiece

        self.max_length = max_length
        self.prefix = prefix
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.pad_id = max(self._sp.pad_id(), 0)
        self._bos, self._eos = self._sp.bos_id(), self._sp.eos_id()

    def encode_batch(self, texts: list[str], pairs: list[str] | None = None,
                     prefix: str | None = None) -> list[Encoded]:
        """Encodes single texts; truncation keeps the first max_length - 2 pieces and the closing `</s>`."""
        if pairs is not None:
            raise ValueError("SentencePiece bundles encode single texts only")
        prefix = self.prefix if prefix is None else prefix
        room = self.max_length - 2
        out = []
        for text in texts:
            # one string per call: the list form starts a thread pool each time, 20x the cost for one text
            # (63 us vs 3 us measured), and the GIL is held either way
            pieces = self._sp.encode(prefix + text)
            ids = np.asarray([self._bos, *pieces[:room], self._eos], dtype=np.int64)
            out.append(Encoded(ids, np.zeros_like(ids), len(pieces) > room))
        return out


def load_tokenizer(bundle: Bundle) -> TextTokenizer:
    """The bundle's SentencePiece model when it has one (less memory), else its tokenizer.json."""
    if "sentencepiece" in bundle.meta["files"] and bundle.file("sentencepiece").is_file():
        return SentencePieceTokenizer(bundle.file("sentencepiece"), bundle.max_length, bundle.text_prefix)
    return HfTokenizer(bundle.file("tokenizer"), bundle.max_length, bundle.text_prefix)
