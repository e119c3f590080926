"""StructBERT (ModelScope) checkpoint -> senti bundle: labels, tokenizer parity, ONNX parity, hub fetching."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from senti.model.recipes import structbert as sb
from tests.structbert_checkpoints import (NLI_LABELS, SENTIMENT_LABELS,
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
SENTIMENT_MARGIN = 4.0  # logits added to each TEXTS margin of the sentiment fixture
NLI_MARGIN = 2.0  # entailment logits: the top NLI_PAIRS candidate up by this, every other one down by it
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


def widen_margins(folder: Path, batch, shifts: dict[int, np.ndarray]) -> None:
    """Adds w_r . pooled + b_r to classifier row r, (w_r, b_r) the least-norm solution of w . pooled_i + b =
    shifts[r][i] on `batch` (fewer inputs than pooled dimensions: exact), so logit r of input i moves by exactly
    shifts[r][i]. A random classifier's margins on inputs nothing was fitted on are whatever the seed gives, and
    INT8 moves logits by ~1 here; moving them apart by construction makes argmax checks hold on any machine."""
    pooled, _ = pooled_and_logits(folder, batch)
    design = np.hstack([pooled, np.ones((len(pooled), 1))])
    path = folder / "model.safetensors"
    if path.exists():
        from safetensors.torch import load_file, save_file
        sd = load_file(str(path))
    else:
        path = folder / "pytorch_model.bin"
        sd = torch.load(path, weights_only=True)
    weight, bias = sd["classifier.weight"].double(), sd["classifier.bias"].double()
    for row, shift in shifts.items():
        solution = np.linalg.lstsq(design, np.asarray(shift, dtype=np.float64), rcond=None)[0]
        weight[row] += torch.from_numpy(solution[:-1])
        bias[row] += float(solution[-1])
    sd["classifier.weight"], sd["classifier.bias"] = weight.float(), bias.float()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)


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
    """(checkpoint folder, built bundle) for a tiny sentiment model saved as pytorch_model.bin."""
    root = tmp_path_factory.mktemp("sentiment")
    # seed 2: random weights that put TEXTS into both classes (torch's seeded CPU generator: the same weights on
    # every machine). Their margins are the seed's (1.4 at the least), and INT8 moves them by up to ~1.1: each
    # text's logit difference is moved SENTIMENT_MARGIN further the way the seed already sends it.
    ckpt = make_tiny_structbert_checkpoint(root / "nlp_structbert_sentiment-classification_chinese-tiny", seed=2)
    _, logits = pooled_and_logits(ckpt, TEXTS)
    side = np.sign(logits[:, 1] - logits[:, 0])
    assert set(side) == {-1.0, 1.0}, side  # both classes: the INT8 agreement check is not vacuous
    widen_margins(ckpt, TEXTS, {0: -side * SENTIMENT_MARGIN / 2, 1: side * SENTIMENT_MARGIN / 2})
    bundle = sb.build_structbert_bundle(str(ckpt), root / "bundle", progress=False)
    return ckpt, bundle


@pytest.fixture(scope="module")
def nli(tmp_path_factory):
    """(checkpoint folder, built bundle) for a tiny NLI model saved as model.safetensors."""
    root = tmp_path_factory.mktemp("nli")
    ckpt = make_tiny_structbert_checkpoint(root / "nlp_structbert_zero-shot-classification_chinese-tiny",
                                           task="nli", label_source="config", weights="safetensors", seed=1)
    # The random model's top candidate for NLI_PAIRS leads by 0.16 in entailment logit, which INT8 may well undo:
    # its entailment logit moves NLI_MARGIN up and every other one NLI_MARGIN down (their order is kept).
    _, logits = pooled_and_logits(ckpt, NLI_PAIRS)
    top = np.arange(len(NLI_PAIRS)) == int(np.argmax(logits[:, 0]))
    widen_margins(ckpt, NLI_PAIRS, {0: np.where(top, NLI_MARGIN, -NLI_MARGIN)})
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


@pytest.mark.parametrize("source", ["label_mapping", "configuration", "config"])
def test_labels_from_each_source_with_modelscope_precedence(tmp_path, source):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "m", label_source=source)
    # Lower-precedence files hold decoy labels (LABEL_0, cfg_0): only the right source gives these.
    assert sb.resolve_labels(ckpt) == SENTIMENT_LABELS


def test_labels_label2id_order_and_bad_ids(tmp_path):
    (tmp_path / "label_mapping.json").write_text(json.dumps({"正面": 1, "负面": 0}, ensure_ascii=False))
    assert sb.resolve_labels(tmp_path) == ["负面", "正面"]
    (tmp_path / "label_mapping.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(sb.CheckpointError, match="not 0..1"):
        sb.resolve_labels(tmp_path)


def test_labels_missing_everywhere(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(sb.CheckpointError, match="no labels"):
        sb.resolve_labels(tmp_path)


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
    assert doc["quantization"] == "int8-per-channel" and "nli" not in doc
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


def test_missing_weights_fail_with_names(tmp_path):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "m", weights="bin")
    sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    del sd["bert.pooler.dense.weight"], sd["classifier.bias"]
    torch.save(sd, ckpt / "pytorch_model.bin")
    with pytest.raises(sb.CheckpointError, match=r"lacks 2 .*bert\.pooler\.dense\.weight"):
        sb.load_structbert(ckpt)


def test_backbone_prefix_head_and_gamma_beta_layouts_load(tmp_path):
    ckpt = make_tiny_structbert_checkpoint(tmp_path / "m", weights="bin", seed=4)
    ids = torch.tensor([[2, 40, 50, 3]])
    with torch.no_grad():
        want = sb.load_structbert(ckpt)[0](input_ids=ids).logits
    sd = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    renamed = {}
    for k, v in sd.items():  # ModelForTextClassification layout with a custom prefix + TF-era LayerNorm names
        k = k.replace("bert.", "encoder_x.", 1).replace("classifier.", "head.classifier.", 1)
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[k] = v
    torch.save(renamed, ckpt / "pytorch_model.bin")
    cfg = json.loads((ckpt / "configuration.json").read_text(encoding="utf-8"))
    cfg["model"]["backbone"] = {"type": "structbert", "prefix": "encoder_x"}
    (ckpt / "configuration.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    with torch.no_grad():
        got = sb.load_structbert(ckpt)[0](input_ids=ids).logits
    assert torch.equal(got, want)


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
    with pytest.raises(sb.HubUnreachableError, match=r"senti-model build structbert /path/to/"):
        sb.build_structbert_bundle(MODEL_ID, tmp_path / "out", progress=False)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out").exists()


def test_unresolvable_hub_fails_fast(offline_hub, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://modelscope.invalid")  # DNS failure path
    start = time.monotonic()
    with pytest.raises(sb.HubUnreachableError, match="local ModelScope cache"):
        sb.fetch_checkpoint(MODEL_ID)
    assert time.monotonic() - start < 10


def test_cached_snapshot_used_without_network(offline_hub, tmp_path):
    # modelscope-hub's cache layout: {cache}/models/{owner}--{name}/snapshots/{revision}/
    snap = offline_hub / "models" / MODEL_ID.replace("/", "--") / "snapshots" / "master"
    make_tiny_structbert_checkpoint(snap)
    assert sb.fetch_checkpoint(MODEL_ID) == snap
    out = sb.build_structbert_bundle(MODEL_ID, tmp_path / "out", quantize=False, progress=False)
    doc = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert doc["name"] == "structbert-sentiment-chinese-base" and doc["provenance"]["source"] == MODEL_ID
