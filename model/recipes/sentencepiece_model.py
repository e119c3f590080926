"""Converts a Unigram tokenizer.json (XLM-R / e5 style) into an equivalent SentencePiece model file.

Why: the `tokenizers` Unigram model keeps its 250k pieces in a trie of hash maps that costs ~280 MB of
RSS in the server; SentencePiece's double-array trie holds the same model in ~50 MB. Piece ids are kept
identical to tokenizer.json (the `<s>`, `<pad>`, `</s>`, `<unk>` ids of the HF layout), so the ONNX model's
ids do not change.
"""
import base64
import json
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as sp_pb

SPECIAL_TYPES = {"<unk>": "UNKNOWN", "<s>": "CONTROL", "</s>": "CONTROL", "<pad>": "CONTROL", "<mask>": "USER_DEFINED"}


def unigram_to_sentencepiece(tokenizer_json: Path, out: Path) -> Path:
    """Writes a .model file with tokenizer.json's pieces, scores, ids and precompiled normaliser."""
    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    model = spec["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"{tokenizer_json} holds a {model.get('type')} model; only Unigram converts")
    proto = sp_pb.ModelProto()
    piece_type = sp_pb.ModelProto.SentencePiece.Type
    ids = {}
    for i, (piece, score) in enumerate(model["vocab"]):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = piece_type.Value(SPECIAL_TYPES.get(piece, "NORMAL"))
        ids[piece] = i
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(model["vocab"])
    trainer.unk_id, trainer.bos_id, trainer.eos_id = ids["<unk>"], ids["<s>"], ids["</s>"]
    trainer.pad_id = ids.get("<pad>", -1)
    trainer.split_by_whitespace = True
    normalizer = proto.normalizer_spec
    normalizer.name = "nmt_nfkc"
    normalizer.precompiled_charsmap = base64.b64decode(_precompiled_charsmap(spec["normalizer"]))
    # Metaspace(prepend_scheme=always) + Replace(' {2,}' -> ' ') in tokenizer.json mean exactly these three.
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    out = Path(out)
    out.write_bytes(proto.SerializeToString())
    return out


def _precompiled_charsmap(normalizer: dict) -> str:
    """The base64 charsmap of the Precompiled normaliser, alone or inside a Sequence."""
    steps = normalizer.get("normalizers", [normalizer]) if normalizer else []
    for step in steps:
        if step.get("type") == "Precompiled":
            return step["precompiled_charsmap"]
    raise ValueError("tokenizer.json has no Precompiled normaliser to carry over")
