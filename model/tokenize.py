"""Text -> token ids with the bundle's tokenizer.json, truncating to the model's max length."""
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .types import Encoded

PAD_TOKENS = ("<pad>", "[PAD]")


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer`: adds the model's text prefix and flags truncated inputs."""

    def __init__(self, tokenizer_json: Path, max_length: int, prefix: str = ""):
        self.max_length = max_length
        self.prefix = prefix
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        # Truncation in Rust keeps the special tokens; `overflowing` tells us it happened.
        self._tok.enable_truncation(max_length)
        self.pad_id = next((i for t in PAD_TOKENS if (i := self._tok.token_to_id(t)) is not None), 0)

    def encode_batch(self, texts: list[str], pairs: list[str] | None = None, prefix: str | None = None) -> list[Encoded]:
        """Encodes texts (or text/pair tuples) in one call; the prefix (default: the model's) goes on texts only."""
        prefix = self.prefix if prefix is None else prefix
        firsts = [prefix + t for t in texts]
        inputs = list(zip(firsts, pairs)) if pairs is not None else firsts
        return [
            Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64), bool(e.overflowing))
            for e in self._tok.encode_batch(inputs)
        ]
