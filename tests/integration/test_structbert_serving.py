"""StructBERT end to end: checkpoints in the hub repos' layouts -> `senti-model structbert` -> serve -> the RPCs."""
import json

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from senti.model.recipes.cli import main as senti_model
from senti.model.heads import softmax
from senti.v1 import senti_pb2 as pb
from tests.conftest import running_server
from tests.structbert_checkpoints import make_tiny_structbert_checkpoint


@pytest.fixture(scope="module")
def structbert_bundles(tmp_path_factory):
    """A sentiment and an NLI bundle built by the CLI from tiny checkpoints in ModelScope's layout."""
    root = tmp_path_factory.mktemp("structbert")
    out = {}
    for task in ("sentiment", "nli"):
        folder = make_tiny_structbert_checkpoint(root / f"ckpt-{task}", task=task)
        assert senti_model(["--quiet", "structbert", str(folder), "--out", str(root / task)]) == 0
        out[task] = root / task
    return out


@pytest.fixture(scope="module")
def server(structbert_bundles):
    # fp32: the formulas are checked exactly against the fp32 ONNX file (INT8 would add quantisation error)
    with running_server(structbert_bundles["sentiment"], structbert_bundles["nli"], variant="fp32") as pair:
        yield pair


def onnx_logits(bundle, firsts, seconds=None):
    """Logits straight from the bundle's ONNX model, one input at a time (no padding, no batching)."""
    meta = json.loads((bundle / "bundle.json").read_text())
    tok = Tokenizer.from_file(str(bundle / meta["files"]["tokenizer"]))
    tok.no_padding()
    tok.enable_truncation(meta["max_length"])
    session = ort.InferenceSession(str(bundle / meta["files"]["model_fp32"]), providers=["CPUExecutionProvider"])
    rows = []
    for i, first in enumerate(firsts):
        enc = tok.encode(first, seconds[i]) if seconds else tok.encode(first)
        feeds = {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask]),
                 "token_type_ids": np.array([enc.type_ids])}
        rows.append(session.run(None, {k: v.astype(np.int64) for k, v in feeds.items()})[0][0])
    return np.stack(rows)


def test_predict_and_stream_use_the_checkpoint_labels(server, structbert_bundles):
    _, client = server
    texts = ["服务态度很好", "质量太差了，退货", "一般"]
    predictions = client.predict(texts)
    expected = softmax(onnx_logits(structbert_bundles["sentiment"], texts))
    for p, probs in zip(predictions, expected):
        assert list(p.scores) == ["负面", "正面"]
        assert [p.scores["负面"], p.scores["正面"]] == pytest.approx(list(probs), abs=1e-4)
        assert p.polarity == {"负面": "negative", "正面": "positive"}[p.label]
    streamed = {r.id: r.prediction for r in client.stream(iter([("a", texts[0]), ("b", texts[1])]))}
    assert streamed["a"].scores == pytest.approx(predictions[0].scores, abs=1e-5)


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_follows_modelscope_formula(server, structbert_bundles, multi_label):
    _, client = server
    texts, labels = ["国足赢了比赛", "股市大跌"], ["体育", "财经", "科技"]
    results = client.classify_zero_shot(texts, labels, multi_label=multi_label)
    firsts = [t for t in texts for _ in labels]
    logits = onnx_logits(structbert_bundles["nli"], firsts, labels * len(texts)).reshape(2, 3, -1)
    for result, per_text in zip(results, logits):
        if multi_label:
            expected = softmax(per_text[:, [2, 0]], axis=-1)[:, 1]
        else:
            expected = softmax(per_text[:, 0])
        assert dict(result.labels) == pytest.approx(dict(zip(labels, expected.tolist())), abs=1e-4)
        assert [s for _, s in result.labels] == sorted((s for _, s in result.labels), reverse=True)


def test_info_says_which_model_serves_what(server):
    _, client = server
    models = {m.kind: m for m in client.info().models}
    assert list(models["classifier"].tasks) == [pb.TASK_SENTIMENT]
    assert list(models["nli"].tasks) == [pb.TASK_ZERO_SHOT]
    assert models["nli"].default_template == "{}"
    assert list(models["classifier"].labels) == ["负面", "正面"]
    assert models["classifier"].quantization == "none"


def test_int8_bundle_serves_too(structbert_bundles):
    with running_server(structbert_bundles["sentiment"], structbert_bundles["nli"]) as (_, client):
        assert {m.quantization for m in client.info().models} == {"int8-per-channel-per-token"}
        assert client.predict("很好")[0].label in ("负面", "正面")
        assert len(client.classify_zero_shot("很好", ["体育", "财经"])[0].labels) == 2


def test_int8_structbert_scores_do_not_depend_on_batch_mates(structbert_bundles):
    # per-token activation scales: sentiment and NLI pairs score the same alone (solo session) and batched
    texts = ["服务态度很好", "质量太差了，退货", "一般", "物流很快，包装也好，下次还来" * 3, "不推荐"]
    labels = ["体育", "财经", "科技"]
    with running_server(structbert_bundles["sentiment"], structbert_bundles["nli"], cache_size=0, sessions=2,
                        intra_op_threads=1, solo_threads=2) as (_, client):
        alone = [client.predict(text)[0].scores for text in texts]
        batched = [p.scores for p in client.predict(texts)]
        zs_alone = [dict(client.classify_zero_shot(text, labels)[0].labels) for text in texts]
        zs_batched = [dict(r.labels) for r in client.classify_zero_shot(texts, labels)]
    for one, other in [*zip(alone, batched), *zip(zs_alone, zs_batched)]:
        assert one.keys() == other.keys()
        assert max(abs(one[k] - other[k]) for k in one) <= 1e-6
