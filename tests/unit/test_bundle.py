"""bundle.json checks: every problem is a BundleError that says what is wrong."""
import json

import pytest

from senti.model.bundle import BundleError, load_bundle


def _bundle(tmp_path, **changes):
    meta = {"format_version": 1, "kind": "embedding", "labels": ["negative", "positive"], "max_length": 16,
            "files": {"model": "model.onnx", "tokenizer": "tokenizer.json", "head": "head.npz"},
            "onnx": {"inputs": ["input_ids", "attention_mask"], "output": "embedding"}}
    meta.update(changes)
    for name in ("model.onnx", "tokenizer.json", "head.npz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "bundle.json").write_text(json.dumps(meta))
    return tmp_path


def test_a_complete_bundle_loads_with_its_optional_files(tmp_path):
    files = {"model": "model.onnx", "tokenizer": "tokenizer.json", "head": "head.npz",
             "ngram_head": "head.npz", "hypothesis_model": "model.onnx", "shared_weights": "head.npz"}
    bundle = load_bundle(_bundle(tmp_path, files=files))
    assert bundle.tasks == ("sentiment", "zeroshot") and bundle.has_file("hypothesis_model")
    assert bundle.file("ngram_head") == tmp_path.resolve() / "head.npz"


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 2}, "has format_version 2; this senti reads 1"),
    ({"kind": "llm"}, "has kind 'llm'; expected one of embedding, classifier, nli"),
    ({"kind": "classifier", "tasks": ["zeroshot"]}, "of kind classifier cannot serve zeroshot"),
    ({"files": {"model": "model.onnx", "tokenizer": "tokenizer.json", "head": "head.npz",
                "hypothesis_model": "model.hypotheses.onnx"}}, "is incomplete: model.hypotheses.onnx is missing"),
    ({"files": {"model": "model.onnx", "tokenizer": "tokenizer.json"}}, "has no 'head' file"),
])
def test_bad_bundles_say_what_is_wrong(tmp_path, changes, message):
    with pytest.raises(BundleError, match=message.replace("(", r"\(")):
        load_bundle(_bundle(tmp_path, **changes))


def test_a_missing_bundle_points_at_make_model(tmp_path):
    with pytest.raises(BundleError, match="make model"):
        load_bundle(tmp_path / "nowhere")
