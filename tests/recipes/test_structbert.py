"""StructBERT (ModelScope) checkpoint -> senti bundle: layouts and their precedence rules, labels, tokenizer parity,
ONNX parity, hub fetching. (tests/modelscope runs ModelScope's own pipeline on every layout.)"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from senti.model.recipes import structbert as sb
from senti.model.recipes import structbert_layout as sl
from senti.model.recipes.cli import build_parser
from tests.structbert_checkpoints import _arch as tiny_arch
from tests.structbert_checkpoints import _tiny_vocab as tiny_vocab
from tests.structbert_checkpoints import (CASES, NLI_LABELS, SENTIMENT_LABELS, SENTIMENT_MAIN, make_checkpoint,
                                          make_tiny_structbert_checkpoint)

torch.set_num_threads(2)  # shared 2-core build machine

TEXTS = [
    "这家店的服务态度很好，物流也快！",
    "质量太差了，非常失望。退货！！",
    "The iPhone 12 is VERY good, 2024年买的",
    "电影剧情一般般……演员还行",
    "喜欢😀😀 不推荐🙃",
    "（全新）《文章标题》：科技、汽车；  教育\t文化\n",
    "Café naïve résumé ＡＢＣ １２３ ok",
    "unbelievable movies! [SEP] 好",
    "a" * 120 + " 好",
    "",
]
PAIRS = [("全新突破 解放军运20版空中加油机曝光", "这篇文章的标题是军事"),
         ("这个手机很好用", "正面"), ("the movie is bad", "负面评价。")]
MODEL_ID = "damo/nlp_structbert_sentiment-classification_chinese-base"
NLI_TEXT, NLI_TEMPLATE = "全新突破 解放军运20版空中加油机曝光", "这篇文章的标题是{}"
NLI_CANDIDATES = ["文化", "体育", "娱乐", "财经", "汽车", "教育", "科技", "军事"]
NLI_PAIRS = [(NLI_TEXT, NLI_TEMPLATE.format(c)) for c in NLI_CANDIDATES]


# ----------------------------------------------------------------------------- helpers / fixtures


def slow_tokenizer(folder: Path):
    """transformers' pure-python BertTokenizer (what ModelScope instantiates for structbert)."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    # transformers 5 renamed the python tokenizer; token_type_ids are no longer returned by default.
    tok = BertTokenizerLegacy(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    return tok


def session(path: Path) -> ort.InferenceSession:
    """2-thread CPU session."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_logits(bundle: Path, model_key: str, batch) -> np.ndarray:
    """Logits from the bundle's own tokenizer.json + ONNX file, per-batch padding."""
    doc = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(bundle / doc["files"]["tokenizer"]))
    enc = tok.encode_batch(batch)
    feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
    return session(bundle / doc["files"][model_key]).run([doc["onnx"]["output"]], feed)[0]


def torch_logits_modelscope_style(folder: Path, batch) -> np.ndarray:
    """Reference: slow BertTokenizer padded to 512 (ModelScope's default) into the torch model."""
    model, _ = sb.load_structbert(folder)
    tok = slow_tokenizer(folder)
    first = [b[0] if isinstance(b, tuple) else b for b in batch]
    second = [b[1] for b in batch] if isinstance(batch[0], tuple) else None
    enc = tok(first, second, padding="max_length", truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        return model(**{k: enc[k] for k in sb.ONNX_INPUTS}).logits.numpy()


def pooled_and_logits(folder: Path, batch) -> tuple[np.ndarray, np.ndarray]:
    """The torch model's pooled outputs (the classifier's input) and logits, tokenized as the reference is."""
    model, _ = sb.load_structbert(folder)
    tok = slow_tokenizer(folder)
    first = [b[0] if isinstance(b, tuple) else b for b in batch]
    second = [b[1] for b in batch] if isinstance(batch[0], tuple) else None
    enc = tok(first, second, padding="max_length", truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        pooled = model.bert(**{k: enc[k] for k in sb.ONNX_INPUTS}).pooler_output
        return pooled.double().numpy(), model.classifier(pooled).double().numpy()


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def modelscope_zero_shot(logits: np.ndarray, candidate_labels: list[str], multi_label: bool = False):
    """numpy port of ZeroShotClassificationPipeline.postprocess (entailment 0, contradiction 2)."""
    if multi_label or len(candidate_labels) == 1:
        scores = softmax(logits[..., [2, 0]], axis=-1)[..., 1]
    else:
        scores = softmax(logits[..., 0], axis=-1)
    order = list(reversed(scores.argsort()))
    return [candidate_labels[i] for i in order], [float(scores[i]) for i in order]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """(checkpoint folder, built bundle) for a tiny sentiment model in the hub repo's layout (backbone/head,
    encoder.* + head.classifier.* in pytorch_model.bin), margins built in for TEXTS (both classes occur, each
    4 logits apart: INT8 moves them by ~1)."""
    root = tmp_path_factory.mktemp("sentiment")
    ckpt = make_tiny_structbert_checkpoint(root / "nlp_structbert_sentiment-classification_chinese-tiny", seed=2,
                                           margins=TEXTS)
    bundle = sb.build_structbert_bundle(str(ckpt), root / "bundle", progress=False)
    return ckpt, bundle


@pytest.fixture(scope="module")
def nli(tmp_path_factory):
    """(checkpoint folder, built bundle) for a tiny NLI model (model.type structbert, bert.* keys) saved as
    model.safetensors, margins built in for NLI_PAIRS (the top candidate's entailment logit 4 above the rest)."""
    root = tmp_path_factory.mktemp("nli")
    ckpt = make_tiny_structbert_checkpoint(root / "nlp_structbert_zero-shot-classification_chinese-tiny",
                                           task="nli", weights="safetensors", seed=1, margins=NLI_PAIRS,
                                           per_text=len(NLI_PAIRS))
    bundle = sb.build_structbert_bundle(str(ckpt), root / "bundle", progress=False)
    return ckpt, bundle


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """Empty MODELSCOPE_CACHE and a hub endpoint nothing listens on."""
    cache = tmp_path / "ms_cache"
    cache.mkdir()
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    return cache


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("source", ["preprocessor", "preprocessor-first", "label_mapping", "configuration", "config"])
@pytest.mark.parametrize("model", ["backbone-head", "structbert"])
def test_sentiment_labels_follow_the_pipelines_precedence(tmp_path, source, model):
    # The places read later hold decoys (LABEL_0, cfg_0, train_0, negative): only the right order finds these.
    ckpt = make_checkpoint(tmp_path / "m", replace(SENTIMENT_MAIN, model=model, labels=source,
                                                   prefix="encoder" if model == "backbone-head" else "bert"))
    assert sb.resolve_labels(ckpt) == SENTIMENT_LABELS
    assert sb.load_structbert(ckpt, "sentiment")[1] == SENTIMENT_LABELS


def test_preprocessor_val_label2id_comes_before_label_mapping(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m", "sentiment-preprocessor-labels-first")
    cfg = json.loads((ckpt / "configuration.json").read_text(encoding="utf-8"))
    assert json.loads((ckpt / "label_mapping.json").read_text(encoding="utf-8")) == {"negative": 0, "positive": 1}
    assert set(cfg["preprocessor"]["train"]["label2id"]) == {"train_0", "train_1"}
    assert sl.pipeline_labels(ckpt) == (SENTIMENT_LABELS, "configuration.json preprocessor.val.label2id")
    # parse_label_mapping alone (what the model counts its classes with) would say otherwise:
    assert sl.parse_label_mapping(ckpt) == ({"negative": 0, "positive": 1}, "label_mapping.json")


def test_zero_shot_labels_from_num_labels_alone(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m", "nli-num-labels")
    assert set(json.loads((ckpt / "config.json").read_text(encoding="utf-8"))) >= {"num_labels"}
    assert sb.resolve_labels(ckpt, "nli") == ["LABEL_0", "LABEL_1", "LABEL_2"]
    layout = sl.read_layout(ckpt)
    assert layout.num_labels == 3 and layout.model_labels_source == "LABEL_0..2 from config.json num_labels"


def test_labels_label2id_order_and_bad_ids(tmp_path):
    (tmp_path / "label_mapping.json").write_text(json.dumps({"正面": 1, "负面": 0}, ensure_ascii=False))
    assert sb.resolve_labels(tmp_path) == ["负面", "正面"]
    (tmp_path / "label_mapping.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(sb.CheckpointError, match="not 0..1"):
        sb.resolve_labels(tmp_path)


def test_labels_missing_everywhere(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(sb.CheckpointError, match="no labels.*bare class ids"):
        sb.resolve_labels(tmp_path)


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name", list(CASES))
def test_every_layout_reads_as_modelscope_builds_it(tmp_path, name):
    """Prefix, labels, max length and architecture of each layout tests/modelscope checks against ModelScope."""
    v = CASES[name]
    ckpt = make_checkpoint(tmp_path / name, v, seed=5)
    model, labels, layout = sb._load(ckpt, v.task)
    assert layout.loader == ("task-model" if v.task_model else "sbert")
    assert layout.prefix == v.prefix
    assert labels == (SENTIMENT_LABELS if v.task == "sentiment" else
                      ["LABEL_0", "LABEL_1", "LABEL_2"] if v.labels == "num_labels" else NLI_LABELS)
    assert sb._max_length(ckpt, layout)[0] == v.effective_max_length
    arch = v.effective_arch(tiny_arch(len(tiny_vocab()), 2, 32, heads=2))
    assert layout.arch == arch
    assert (model.config.num_attention_heads, model.config.layer_norm_eps) == (arch["num_attention_heads"],
                                                                               arch["layer_norm_eps"])


@pytest.mark.parametrize("field,source", [("prefix", "configuration.json model.backbone prefix"),
                                          ("base_model_prefix", "configuration.json model.backbone base_model_prefix")])
def test_backbone_prefix_field(tmp_path, field, source):
    ckpt = make_checkpoint(tmp_path / "m", replace(SENTIMENT_MAIN, prefix="sbert_x", prefix_field=field))
    layout = sl.read_layout(ckpt)
    assert (layout.prefix, layout.prefix_source) == ("sbert_x", source)
    sb.load_structbert(ckpt)


def test_config_json_base_model_prefix(tmp_path):
    for name in ("sentiment-config-json-base-model-prefix", "nli-config-json-base-model-prefix"):
        layout = sl.read_layout(make_checkpoint(tmp_path / name, name))
        assert (layout.prefix, layout.prefix_source) == ("encoder", "config.json base_model_prefix")


def test_architecture_comes_from_configuration_json_over_config_json(tmp_path):
    ckpt = make_checkpoint(tmp_path / "tm", "sentiment-architecture-precedence")
    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    assert (config["num_attention_heads"], config["layer_norm_eps"]) == (2, 1e-12)
    layout = sl.read_layout(ckpt)
    assert (layout.arch["num_attention_heads"], layout.arch["layer_norm_eps"]) == (4, 1e-5)
    assert layout.arch_sources["num_attention_heads"] == "configuration.json model.backbone num_attention_heads"
    assert any("config.json layer_norm_eps, num_attention_heads ignored" in n for n in layout.notes)
    model = sb.load_structbert(ckpt)[0]
    assert (model.config.num_attention_heads, model.config.layer_norm_eps) == (4, 1e-5)
    # structbert: the model block overrides config.json too (PretrainedConfig.from_dict).
    layout = sl.read_layout(make_checkpoint(tmp_path / "sb", "nli-model-block-overrides"))
    assert layout.arch_sources["num_attention_heads"] == "configuration.json model num_attention_heads"
    assert layout.arch["num_attention_heads"] == 4 and layout.arch_sources["hidden_size"] == "config.json hidden_size"


def test_backbone_block_is_the_whole_architecture(tmp_path):
    """ModelScope builds the backbone from configuration.json's block alone: a field missing there is SbertConfig's
    default even when config.json has the right value, and the build says so."""
    ckpt = make_checkpoint(tmp_path / "m", SENTIMENT_MAIN)
    cfg = json.loads((ckpt / "configuration.json").read_text(encoding="utf-8"))
    del cfg["model"]["backbone"]["vocab_size"]
    (ckpt / "configuration.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(sb.CheckpointError, match=r"word_embeddings.*vocab_size 30522 \(SbertConfig's default \(no "
                                                 r"vocab_size in configuration.json model.backbone\)\)"):
        sb.load_structbert(ckpt)


def test_max_length_from_the_preprocessor_block(tmp_path):
    a = make_checkpoint(tmp_path / "a", "sentiment-max-length-128")
    assert sl.max_length(a) == (128, "configuration.json preprocessor.val.max_length")
    b = make_checkpoint(tmp_path / "b", "sentiment-sequence-length-replaced")
    assert sl.max_length(b) == (512, "the pipeline's sequence_length 512, which replaces configuration.json "
                                     "preprocessor.val.sequence_length")
    c = make_checkpoint(tmp_path / "c", "nli-max-length-128")
    assert sl.max_length(c) == (128, "configuration.json preprocessor.max_length")
    out = sb.build_structbert_bundle(str(a), tmp_path / "out", quantize=False, progress=False)
    doc = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert doc["max_length"] == 128
    layout = doc["provenance"]["modelscope_layout"]
    assert layout["max_length_source"] == "configuration.json preprocessor.val.max_length"
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert len(tok.encode("好" * 300).ids) == 128


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _set(block: str, key: str, value):
    def change(cfg):
        target = cfg
        for part in block.split("."):
            target = target[part]
        target[key] = value
    return change


@pytest.mark.parametrize("variant,edit,message", [
    # model.type structbert reads config.json base_model_prefix only: encoder.* keys never load there.
    (replace(SENTIMENT_MAIN, model="structbert", prefix="encoder"),
     lambda ck: _edit(ck / "config.json", lambda c: c.pop("base_model_prefix")),
     r"no key starts with 'bert' \(SbertForSequenceClassification.base_model_prefix \(no config.json "
     r"base_model_prefix\)\)"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model", "type", "bert-classifier")),
     r"configuration.json model.type is 'bert-classifier'"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model.backbone", "type", "bert")),
     r"configuration.json model.backbone type is 'bert'"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model.head", "type", "fill-mask")),
     r"configuration.json model.head type is 'fill-mask'"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model.head", "hidden_size", 64)),
     r"the head's hidden_size 64 \(configuration.json model.head hidden_size\)"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model.backbone", "num_hidden_layers", 1)),
     r"has 2 layers, but ModelScope builds 1 from configuration.json model.backbone num_hidden_layers"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("preprocessor.val", "max_length", "long")),
     r"preprocessor.val.max_length must be an integer"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json",
                                      _set("preprocessor.val", "label2id", {"a": 0, "b": 1, "c": 2})),
     r"the pipeline's 3 labels \(configuration.json preprocessor.val.label2id\) do not match the 2 classes"),
    (SENTIMENT_MAIN, lambda ck: _edit(ck / "configuration.json", _set("model", "num_labels", 3)),
     r"the pipeline's 2 labels .* do not match the 3 classes ModelScope builds the model with \(configuration.json "
     r"model.num_labels\)"),
    (SENTIMENT_MAIN, lambda ck: (_edit(ck / "configuration.json", _set("model", "num_labels", 3)),
                                 _edit(ck / "configuration.json",
                                       _set("preprocessor.val", "label2id", {"a": 0, "b": 1, "c": 2}))),
     r"the classifier has 2 rows, but ModelScope builds 3 from configuration.json model.num_labels"),
    (CASES["nli-structbert"], lambda ck: _edit(ck / "configuration.json", _set("model", "num_labels", 4)),
     r"configuration.json model.num_labels 4 disagrees with the 3 labels of config.json label2id"),
    # type text-classification without a backbone block: ModelScope's preprocessor builds AutoTokenizer.
    (CASES["sentiment-config-json-base-model-prefix"], lambda ck: (ck / "tokenizer_config.json").unlink(),
     r"builds transformers' AutoTokenizer.*no tokenizer_class"),
    # no label source ModelForTextClassification can count its classes with.
    (replace(SENTIMENT_MAIN, config_json=False), lambda ck: None,
     r"ModelForTextClassification takes its number of labels from configuration.json model.num_labels"),
    (replace(SENTIMENT_MAIN, config_json=False, labels="preprocessor+label_mapping", model="structbert",
             prefix="bert"), lambda ck: None, r"has no config.json: SbertForSequenceClassification"),
], ids=["structbert-encoder-keys", "model-type", "backbone-type", "head-type", "head-hidden-size", "layers",
        "max-length", "label-count", "num-labels", "classifier-rows", "nli-num-labels", "auto-tokenizer",
        "no-class-count", "no-config-json"])
def test_layouts_modelscope_does_not_load_fail_naming_file_and_field(tmp_path, variant, edit, message):
    ckpt = make_checkpoint(tmp_path / "m", variant)
    edit(ckpt)
    with pytest.raises(sb.CheckpointError, match=message):
        sb.build_structbert_bundle(str(ckpt), tmp_path / "out", quantize=False, progress=False)
    assert not (tmp_path / "out").exists()


def test_bare_backbone_keys_beside_head_keys_are_rejected_like_modelscope(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m", replace(SENTIMENT_MAIN, prefix="bert"))
    sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    torch.save({k.replace("bert.", "", 1): v for k, v in sd.items()}, ckpt / "pytorch_model.bin")
    _edit(ckpt / "configuration.json", _set("model.backbone", "prefix", "bert"))
    with pytest.raises(sb.CheckpointError, match="bare backbone keys beside head"):
        sb.load_structbert(ckpt)
    # with bare classifier.* keys ModelScope loads the bare backbone into its 'bert' attribute
    sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    torch.save({k.replace("head.", "", 1): v for k, v in sd.items()}, ckpt / "pytorch_model.bin")
    sb.load_structbert(ckpt)


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_json_matches_slow_bert_tokenizer(sentiment, tmp_path):
    ckpt, _ = sentiment
    path = sb.build_tokenizer_json(ckpt / "vocab.txt", tmp_path / "tokenizer.json", max_length=512)
    fast, slow = Tokenizer.from_file(str(path)), slow_tokenizer(ckpt)
    fast.no_padding()
    for text in TEXTS:
        want = slow(text)
        got = fast.encode(text)
        assert got.ids == want["input_ids"], text
        assert got.type_ids == want["token_type_ids"], text
    for a, b in PAIRS:
        want = slow(a, b)
        got = fast.encode(a, b)
        assert (got.ids, got.type_ids) == (want["input_ids"], want["token_type_ids"]), (a, b)
    assert fast.encode("这家店很好").ids.count(slow.unk_token_id) == 0  # the fixture vocab really covers CJK
    assert slow.unk_token_id in fast.encode("😀").ids


def test_tokenizer_truncates_like_modelscope(sentiment, tmp_path):
    ckpt, _ = sentiment
    path = sb.build_tokenizer_json(ckpt / "vocab.txt", tmp_path / "tokenizer.json", max_length=16)
    fast, slow = Tokenizer.from_file(str(path)), slow_tokenizer(ckpt)
    long_a, long_b = "这家店的服务态度很好物流也快" * 3, "这篇文章的标题是军事"
    want = slow(long_a, long_b, truncation=True, max_length=16)
    got = fast.encode(long_a, long_b)
    assert got.ids == want["input_ids"] and len(got.ids) == 16


def test_tokenizer_pads_per_batch(sentiment):
    _, bundle = sentiment
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    enc = tok.encode_batch(["好", "这家店的服务态度很好"])
    assert len(enc[0].ids) == len(enc[1].ids) == 12  # longest in batch, not 512
    assert enc[0].attention_mask.count(0) == 9 and enc[0].ids[-1] == 0


# ----------------------------------------------------------------------------- bundle


def test_sentiment_bundle_json(sentiment):
    ckpt, bundle = sentiment
    doc = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    assert doc["format_version"] == 1 and doc["kind"] == "classifier" and doc["tasks"] == ["sentiment"]
    assert doc["name"] == "structbert-sentiment-chinese-tiny"
    assert doc["labels"] == ["负面", "正面"] and doc["max_length"] == 512 and doc["text_prefix"] == ""
    assert doc["files"] == {"model": "model.onnx", "model_fp32": "model.fp32.onnx", "tokenizer": "tokenizer.json"}
    assert doc["quantization"] == "int8-per-channel-per-token" and "nli" not in doc
    assert doc["onnx"] == {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "output": "logits", "dim": 2}
    prov = doc["provenance"]
    assert prov["source"] == str(ckpt) and set(prov["source_files"]) >= {"pytorch_model.bin", "vocab.txt"}
    assert set(prov["built_with"]) == {"torch", "onnx", "onnxruntime", "transformers"}
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "model.fp32.onnx", "model.onnx",
                                                       "tokenizer.json"]
    assert not [p for p in bundle.parent.iterdir() if ".tmp-" in p.name]


def test_onnx_io_signature(sentiment):
    _, bundle = sentiment
    sess = session(bundle / "model.onnx")
    assert [(i.name, i.type) for i in sess.get_inputs()] == [(n, "tensor(int64)") for n in sb.ONNX_INPUTS]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    assert all(isinstance(i.shape[0], str) and isinstance(i.shape[1], str) for i in sess.get_inputs())


def test_sentiment_fp32_onnx_matches_torch_padded_to_512(sentiment):
    ckpt, bundle = sentiment
    got = onnx_logits(bundle, "model_fp32", TEXTS)
    want = torch_logits_modelscope_style(ckpt, TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_sentiment_int8_argmax_agrees(sentiment):
    ckpt, bundle = sentiment
    fp32 = onnx_logits(bundle, "model_fp32", TEXTS)
    int8 = onnx_logits(bundle, "model", TEXTS)
    assert (fp32.argmax(-1) == int8.argmax(-1)).all(), (fp32, int8)
    assert len(set(fp32.argmax(-1))) == 2  # both classes occur: the agreement check is not vacuous
    assert (bundle / "model.onnx").stat().st_size < (bundle / "model.fp32.onnx").stat().st_size


def test_nli_bundle_and_zero_shot_scores_match_modelscope(nli):
    ckpt, bundle = nli
    doc = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    assert doc["kind"] == "nli" and doc["tasks"] == ["zeroshot"] and doc["labels"] == NLI_LABELS
    assert doc["nli"] == {"entailment_id": 0, "contradiction_id": 2, "template": "{}"}
    assert doc["onnx"]["dim"] == 3 and doc["name"] == "structbert-zero-shot-chinese-tiny"
    candidates, pairs = NLI_CANDIDATES, NLI_PAIRS
    want_l = torch_logits_modelscope_style(ckpt, pairs)
    got_l = onnx_logits(bundle, "model_fp32", pairs)
    np.testing.assert_allclose(got_l, want_l, atol=1e-4, rtol=0)
    for multi in (False, True):
        want = modelscope_zero_shot(want_l, candidates, multi)
        got = modelscope_zero_shot(got_l, candidates, multi)
        assert got[0] == want[0]
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
    int8 = modelscope_zero_shot(onnx_logits(bundle, "model", pairs), candidates)
    assert int8[0][0] == modelscope_zero_shot(want_l, candidates)[0][0]


def test_safetensors_and_bin_load_identically(tmp_path):
    a = make_tiny_structbert_checkpoint(tmp_path / "bin", weights="bin", seed=3)
    b = make_tiny_structbert_checkpoint(tmp_path / "st", weights="safetensors", seed=3)
    ids = torch.tensor([[2, 40, 50, 60, 3]])
    with torch.no_grad():
        la = sb.load_structbert(a)[0](input_ids=ids).logits
        lb = sb.load_structbert(b)[0](input_ids=ids).logits
    assert torch.equal(la, lb)
    assert any("model.safetensors read in place of pytorch_model.bin" in n for n in sl.read_layout(b).notes)


def test_each_loader_prefers_its_own_weights_file(tmp_path):
    """The task model opens pytorch_model.bin only; transformers' from_pretrained prefers model.safetensors."""
    for variant, want in (("sentiment-backbone-head", "pytorch_model.bin"), ("nli-structbert", "model.safetensors")):
        ckpt = make_checkpoint(tmp_path / variant, variant)  # pytorch_model.bin
        (ckpt / "model.safetensors").write_bytes(b"")  # both present: never opened by read_layout
        assert sl.read_layout(ckpt).weights.name == want


def test_missing_weights_fail_with_names(tmp_path):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "m", weights="bin")
    sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    del sd["encoder.pooler.dense.weight"], sd["head.classifier.bias"]
    torch.save(sd, ckpt / "pytorch_model.bin")
    with pytest.raises(sb.CheckpointError, match=r"lacks 2 .*ModelForTextClassification.*bert\.pooler\.dense\."
                                                 r"weight.*backbone keys 'encoder\.\*' from configuration\.json "
                                                 r"model\.backbone prefix"):
        sb.load_structbert(ckpt)


def test_tf_layer_norm_names_load(tmp_path):
    ids = torch.tensor([[2, 40, 50, 3]])
    for name in ("sentiment-backbone-head", "sentiment-structbert-label-mapping"):
        ckpt = make_checkpoint(tmp_path / name, replace(CASES[name], weights="bin"), seed=4)
        with torch.no_grad():
            want = sb.load_structbert(ckpt)[0](input_ids=ids).logits
        sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
        torch.save({k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                    for k, v in sd.items()}, ckpt / "pytorch_model.bin")
        with torch.no_grad():
            assert torch.equal(sb.load_structbert(ckpt)[0](input_ids=ids).logits, want)


def test_task_detection_and_override(tmp_path):
    s = make_tiny_structbert_checkpoint(tmp_path / "s")
    n = make_tiny_structbert_checkpoint(tmp_path / "n", task="nli")
    assert sb.detect_task(s) == "sentiment" and sb.detect_task(n) == "nli"
    assert sb.detect_task(s, "nli") == "nli" and sb.detect_task(n, "sentiment") == "sentiment"
    with pytest.raises(ValueError, match="unknown task"):
        sb.detect_task(s, "ner")


def test_unquantized_bundle_and_atomic_rebuild(tmp_path):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "nlp_structbert_sentiment-classification_chinese-x")
    out = tmp_path / "out"
    sb.build_structbert_bundle(str(ckpt), out, quantize=False, progress=False)
    doc = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert doc["quantization"] == "none" and doc["files"]["model"] == "model.fp32.onnx"
    assert not (out / "model.onnx").exists()
    (ckpt / "pytorch_model.bin").write_bytes(b"broken")  # a failing rebuild must keep the old bundle
    with pytest.raises(Exception):
        sb.build_structbert_bundle(str(ckpt), out, quantize=False, progress=False)
    assert json.loads((out / "bundle.json").read_text(encoding="utf-8")) == doc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nlp_structbert_sentiment-classification_chinese-x",
                                                           "out"]


# ----------------------------------------------------------------------------- fetching


def test_local_folder_used_as_is(tmp_path):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "m")
    assert sb.fetch_checkpoint(str(ckpt)) == ckpt.resolve()


def test_offline_model_id_fails_fast_with_local_folder_hint(offline_hub, tmp_path):
    start = time.monotonic()
    with pytest.raises(sb.HubUnreachableError) as caught:
        sb.build_structbert_bundle(MODEL_ID, tmp_path / "out", progress=False)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out").exists()
    hint = str(caught.value)
    command = hint.rsplit("run: ", 1)[1]
    assert command == ("senti-model structbert /path/to/nlp_structbert_sentiment-classification_chinese-base "
                       "--out bundles/structbert-sentiment-chinese-base")
    # the command it prints is one senti-model really has
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.source, args.out) == ("structbert", "/path/to/nlp_structbert_sentiment-"
                                                     "classification_chinese-base", "bundles/structbert-sentiment-"
                                                     "chinese-base")


def test_unresolvable_hub_fails_fast(offline_hub, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://modelscope.invalid")  # DNS failure path
    start = time.monotonic()
    with pytest.raises(sb.HubUnreachableError, match="local ModelScope cache"):
        sb.fetch_checkpoint(MODEL_ID)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("model_id", [MODEL_ID, "iic/nlp_structbert_zero-shot-classification_chinese-base"])
def test_cached_snapshot_used_without_network(offline_hub, tmp_path, model_id):
    # modelscope-hub's cache layout: {cache}/models/{owner}--{name}/snapshots/{revision}/ (iic/ as damo/)
    snap = offline_hub / "models" / model_id.replace("/", "--") / "snapshots" / "master"
    make_tiny_structbert_checkpoint(snap, task="nli" if "zero-shot" in model_id else "sentiment")
    assert sb.fetch_checkpoint(model_id) == snap
    out = sb.build_structbert_bundle(model_id, tmp_path / "out", quantize=False, progress=False)
    doc = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert doc["name"] == sb.bundle_name(model_id) and doc["provenance"]["source"] == model_id
    assert doc["name"] in ("structbert-sentiment-chinese-base", "structbert-zero-shot-chinese-base")
