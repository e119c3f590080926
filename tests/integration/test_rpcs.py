"""All RPCs over a real channel to a real server on port 0, on the tiny bundle built in the session."""
import json
import math
import shutil
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tokenizers import Tokenizer

from senti.model.heads import DenseHead, softmax
from senti.model.ngrams import CharNgramHead
from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc
from tests.conftest import running_server
from tests.tiny_bundles import TINY_MAX_LOG_ODDS, TINY_POSITIVE


def reference_logits(bundle, texts):
    """Sentiment logits computed directly, one text at a time: tokenizer, one ONNX session, numpy head."""
    meta = json.loads((bundle / "bundle.json").read_text())
    tok = Tokenizer.from_file(str(bundle / meta["files"]["tokenizer"]))
    tok.enable_truncation(meta["max_length"])
    session = ort.InferenceSession(str(bundle / meta["files"]["model"]), providers=["CPUExecutionProvider"])
    head = DenseHead.load(bundle / meta["files"]["head"])
    rows = []
    for text in texts:
        ids = np.array([tok.encode(meta.get("text_prefix", "") + text).ids], dtype=np.int64)
        rows.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return head.logits(np.stack(rows)), meta["labels"]


def reference_probs(bundle, texts):
    """Sentiment probabilities computed directly (see reference_logits)."""
    logits, labels = reference_logits(bundle, texts)
    return softmax(logits), labels


def test_predict_matches_a_direct_computation(tiny_server, tiny_bundle):
    _, client = tiny_server
    texts = ["这家餐厅太难吃了", "服务很贴心", "一般般吧，还行"]
    # The reference runs one text at a time. Dynamic INT8 scales activations per batch, so a text batched with
    # others gets another embedding (0.06 apart in probability on unsaturated texts): one text per call is the
    # reference's own forward. The three-text call then comes from the cache: the same rows, in request order.
    singles = [client.predict(t)[0] for t in texts]
    predictions = client.predict(texts)
    assert client.predict_with_metadata(texts).metadata.cache_hits == 3
    expected, labels = reference_probs(tiny_bundle, texts)
    assert len(predictions) == 3
    for p, probs in zip(singles + predictions, np.concatenate([expected, expected])):
        assert [p.scores[label] for label in labels] == pytest.approx(list(probs), abs=1e-5)
        assert p.label == labels[int(np.argmax(probs))]
        assert p.score == pytest.approx(float(probs.max()), abs=1e-5)
        assert p.polarity == p.label
        assert not p.truncated and p.tokens > 2


def _log_odds(prediction) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):  # a score that underflowed to 0: inf or nan
        return float(np.log(prediction.scores["positive"]) - np.log(prediction.scores["negative"]))


def _write_ngram_head(bundle: Path, refund_weight: float) -> CharNgramHead:
    """A hand-written n-gram head: the bigram 退款 pulls towards negative by refund_weight, 好 by 1 to positive."""
    np.savez(bundle / "sentiment_ngrams.npz", vocab=np.array(["退款", "好"]), idf=np.array([1.0, 1.0], np.float32),
             weights=np.array([[refund_weight, 0.0], [0.0, 1.0]], np.float32), bias=np.zeros(2, np.float32),
             max_n=np.int64(2))
    return CharNgramHead.load(bundle / "sentiment_ngrams.npz")


def _shift(ngrams: CharNgramHead, text: str) -> float:
    logits = ngrams.logits(text)
    return float(logits[1] - logits[0])


def test_ngram_head_logits_are_added_in_predict_and_stream(tiny_bundle, tmp_path):
    bundle = tmp_path / "with-ngrams"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"]["ngram_head"] = "sentiment_ngrams.npz"
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    # texts[0] (with 好) and texts[2] (with no known n-gram) are fitted phrases, whose log-odds the tiny build
    # keeps within TINY_MAX_LOG_ODDS, so their float32 scores carry them (a random model's log-odds on other
    # texts can be far past the ~87 at which the smaller score underflows to 0: log-odds inf, differences nan).
    texts = ["质量很好", "质量很好，但是要退款", "物流很快"]
    assert texts[0] in TINY_POSITIVE and texts[2] in TINY_POSITIVE
    # one text per call: the same INT8 forward in both servers, so only the n-gram logits differ
    with running_server(tiny_bundle) as (_, client):
        plain = [client.predict(t)[0] for t in texts]
    # The random tiny model's own log-odds for texts[1] is whatever it is on this machine, and may not survive in
    # float32 scores: compute it directly (the same one-text forward; test_predict_matches_a_direct_computation),
    # then give 退款 the weight that moves texts[1] to 10 log-odds on the other side (the shift is linear in it).
    logits, _ = reference_logits(tiny_bundle, texts[1:2])
    measured = float(logits[0, 1] - logits[0, 0])
    plain_log_odds = [_log_odds(plain[0]), measured, _log_odds(plain[2])]
    assert all(abs(v) <= TINY_MAX_LOG_ODDS + 0.01 for v in plain_log_odds[::2])
    base = _shift(_write_ngram_head(bundle, 0.0), texts[1])
    per_unit = _shift(_write_ngram_head(bundle, 1.0), texts[1]) - base
    target = -math.copysign(10.0, measured)
    ngrams = _write_ngram_head(bundle, (target - measured - base) / per_unit)
    shift = [_shift(ngrams, t) for t in texts]
    assert shift[0] == pytest.approx(1.0) and shift[2] == 0.0
    assert measured + shift[1] == pytest.approx(target, abs=1e-3)
    with running_server(bundle) as (_, client):
        mixed = [client.predict(t)[0] for t in texts]
        streamed = {r.id: r.prediction for r in client.stream(iter([("1", texts[1])]))}
    assert [_log_odds(m) - p for m, p in zip(mixed, plain_log_odds)] == pytest.approx(shift, abs=1e-3)
    flipped = "negative" if measured > 0 else "positive"
    assert plain[1].label != flipped and mixed[1].label == flipped
    assert streamed["1"].label == flipped and streamed["1"].score == pytest.approx(mixed[1].score, abs=1e-6)


def test_predict_reports_timing_and_caches_repeats(tiny_server):
    _, client = tiny_server
    first = client.predict_with_metadata(["第一次见到这么好的东西"])
    assert first.metadata.inference_us > 0 and first.metadata.total_us > 0
    assert first.metadata.batch_size >= 1 and first.metadata.cache_hits == 0
    again = client.predict_with_metadata(["第一次见到这么好的东西"])
    assert again.metadata.cache_hits == 1
    assert again.predictions[0] == first.predictions[0]


def test_long_text_is_truncated_or_rejected_when_strict(tiny_server):
    running, client = tiny_server
    long_text = "非常好" * 200  # far more tokens than the tiny model's max_length
    [p] = client.predict(long_text)
    assert p.truncated and p.tokens == running.engine.describe()[0].max_tokens
    with pytest.raises(grpc.RpcError) as err:
        client.predict(long_text, strict=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0] is longer than the model's" in err.value.details()


@pytest.mark.parametrize("texts, message", [
    ([], "texts is empty"),
    ([""], "texts[0] is empty"),
    (["好", "   \n\t"], "texts[1] is empty or only whitespace"),
    (["好"] * 9, "texts has 9 items; the limit is 8"),
    (["好" * 100000], "texts[0] has 100000 characters; the limit is 2000"),
])
def test_predict_bad_input_is_invalid_argument(tiny_server, texts, message):
    _, client = tiny_server
    with pytest.raises(grpc.RpcError) as err:
        client.predict(texts)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_control_characters_and_emoji_are_served(tiny_server):
    _, client = tiny_server
    predictions = client.predict(["\x00\x01好评\x7f", "😀😡🔥", "\u200b\ufeff\u202e反转"])
    assert len(predictions) == 3 and all(0 <= p.score <= 1 for p in predictions)


def test_zero_shot_sorted_scores(tiny_server, tiny_bundle, tmp_path):
    _, client = tiny_server
    text, labels = "国足三比零战胜对手", ["体育", "财经", "科技"]
    [result] = client.classify_zero_shot(text, labels)
    scores = [s for _, s in result.labels]
    assert sorted(label for label, _ in result.labels) == sorted(labels)
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    [multi] = client.classify_zero_shot(text, labels, multi_label=True)
    assert all(0 <= s <= 1 for _, s in multi.labels)
    # Multi-label scores are independent sigmoids, not normalised. What they sum to on the random tiny encoder
    # depends on its cosines on this machine (one near 1 and two near 0 would sum to ~1), so the check runs on
    # a copy whose multi-label temperature is 100: every score is sigmoid((cos - 0.82) / 100) with |cos| <= 1,
    # i.e. in [0.4954, 0.5005] whatever the cosines, and three of them sum to ~1.5, never to 1.
    bundle = tmp_path / "flat-multi-label"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["zeroshot"].update(multi_label_center=0.82, multi_label_temperature=100.0)
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    with running_server(bundle) as (_, flat):
        [multi] = flat.classify_zero_shot(text, labels, multi_label=True)
    multi_scores = [s for _, s in multi.labels]
    assert sorted(label for label, _ in multi.labels) == sorted(labels)
    assert all(0.495 < s < 0.501 for s in multi_scores) and multi_scores == sorted(multi_scores, reverse=True)
    assert sum(multi_scores) != pytest.approx(1.0, abs=1e-3)


def test_zero_shot_hypotheses_go_through_the_hypothesis_encoder_with_shared_weights(tiny_bundle, tmp_path):
    from senti.model.recipes.onnx_export import quantize_q4, shared_initializers
    from senti.model.engine import Engine

    bundle = tmp_path / "with-hypothesis-model"
    shutil.copytree(tiny_bundle, bundle)
    quantize_q4(bundle / "model.fp32.onnx", bundle / "model.hypotheses.onnx")
    # the embedding tables are the same in both models: one copy for all sessions
    shared = shared_initializers([bundle / "model.onnx", bundle / "model.hypotheses.onnx"], min_bytes=0)
    assert any("word_embeddings" in name for name in shared)
    np.savez(bundle / "shared_weights.npz", **shared)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"].update(hypothesis_model="model.hypotheses.onnx", shared_weights="shared_weights.npz")
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    engine = Engine.load([bundle])
    try:
        assert set(engine.models[0].shared_weights) == set(shared)
    finally:
        engine.close()
    text, labels, template = "国足三比零战胜对手", ["体育", "财经", "科技"], meta["zeroshot"]["template"]
    hypotheses = [template.replace("{}", label) for label in labels]
    prefix = meta["zeroshot"]["hypothesis_prefix"]

    def embed(model_file, texts, prefix):
        tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
        session = ort.InferenceSession(str(bundle / model_file), providers=["CPUExecutionProvider"])
        out = []
        for t in texts:
            ids = np.array([tok.encode(prefix + t).ids], dtype=np.int64)
            out.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
        return np.stack(out)

    x = embed("model.onnx", [text], meta["text_prefix"])
    cos = {m: (x @ embed(m, hypotheses, prefix).T)[0] for m in ("model.onnx", "model.hypotheses.onnx")}
    temperature = meta["zeroshot"]["temperature"]
    want = softmax(cos["model.hypotheses.onnx"] / temperature)
    # the two encoders give scores far enough apart for the check below to tell them apart
    assert np.abs(softmax(cos["model.onnx"] / temperature) - want).max() > 0.01
    with running_server(bundle) as (_, client):
        [result] = client.classify_zero_shot(text, labels)
        [again] = client.classify_zero_shot(text, labels)  # hypotheses now from the cache
    for got in (result, again):
        assert [dict(got.labels)[label] for label in labels] == pytest.approx(list(want), abs=2e-3)


def test_zero_shot_template_changes_scores_and_repeats_are_cached(tiny_server):
    _, client = tiny_server
    a = client.classify_zero_shot("股市今天大涨", ["财经", "体育"], template="这是一条关于{}的新闻")
    b = client.classify_zero_shot("股市今天大涨", ["财经", "体育"], template="{}")
    assert dict(a[0].labels) != dict(b[0].labels)


@pytest.mark.parametrize("labels, template, message", [
    ([], "", "labels is empty"),
    (["体育", "体育"], "", "labels[1] '体育' repeats labels[0]"),
    (["体育", ""], "", "labels[1] is empty"),
    (["a", "b", "c", "d", "e", "f"], "", "labels has 6 items; the limit is 5"),
    (["体育"], "没有占位符", "hypothesis_template must contain '{}' exactly once"),
    (["体育"], "{}{}", "hypothesis_template must contain '{}' exactly once"),
])
def test_zero_shot_bad_input(tiny_server, labels, template, message):
    _, client = tiny_server
    with pytest.raises(grpc.RpcError) as err:
        client.classify_zero_shot("一条新闻", labels, template=template)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_stream_answers_each_id_once_with_per_item_errors(tiny_server):
    _, client = tiny_server
    items = [(f"id-{i}", "质量很好" if i % 7 else "   ") for i in range(50)]
    items.append(("huge", "好" * 5000))
    results = list(client.stream(iter(items)))
    assert sorted(r.id for r in results) == sorted(i for i, _ in items)
    bad = {r.id: r for r in results if not r.ok}
    assert set(bad) == {f"id-{i}" for i in range(0, 50, 7)} | {"huge"}
    assert all(r.error_code == grpc.StatusCode.INVALID_ARGUMENT for r in bad.values())
    assert "is empty or only whitespace" in bad["id-0"].error_message
    assert "has 5000 characters" in bad["huge"].error_message
    assert all(r.prediction.label in ("negative", "positive") for r in results if r.ok)


def test_stream_strict_item_error_and_empty_stream(tiny_server):
    _, client = tiny_server
    [result] = list(client.stream(iter([("long", "非常好" * 200)]), strict=True))
    assert result.error_code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(client.stream(iter([]))) == []


def test_cancelled_stream_leaves_the_server_serving(tiny_server):
    running, client = tiny_server
    stub = senti_pb2_grpc.SentiServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))

    def endless():
        i = 0
        while True:
            i += 1
            yield pb.PredictStreamRequest(id=str(i), text="还不错")

    call = stub.PredictStream(endless())
    first = next(call)
    assert first.HasField("prediction")
    call.cancel()
    with pytest.raises(grpc.RpcError) as err:
        for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.CANCELLED
    assert client.predict("服务很贴心")[0].label in ("negative", "positive")


def test_model_info(tiny_server, tiny_bundle):
    _, client = tiny_server
    info = client.info()
    [model] = info.models
    assert model.kind == "embedding"
    assert list(model.tasks) == [pb.TASK_SENTIMENT, pb.TASK_ZERO_SHOT]
    assert list(model.labels) == ["negative", "positive"]
    assert model.max_tokens == json.loads((tiny_bundle / "bundle.json").read_text())["max_length"]
    assert "onnxruntime" in model.backend and model.default_template
    assert info.limits.max_texts_per_request == 8 and info.limits.max_stream_in_flight == 4
    assert info.execution_mode == "batched"


def test_health_and_reflection(tiny_server):
    running, client = tiny_server
    assert client.health() == "SERVING"
    assert client.health("senti.v1.SentiService") == "SERVING"
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"senti.v1.SentiService", "grpc.health.v1.Health"} <= names


def test_not_serving_and_unavailable_until_warm(tiny_bundle):
    with running_server(tiny_bundle, warm=False) as (running, client):
        assert client.health() == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as err:
            client.predict("好")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        running.engine.warm_up()
        running.set_serving(True)
        assert client.health() == "SERVING"
        assert client.predict("好")[0].label in ("negative", "positive")


@pytest.mark.parametrize("mode", ["lock", "per-thread"])
def test_every_execution_mode_gives_the_same_answers(tiny_bundle, mode):
    # INT8 with per-token activation scales: batching, sessions and thread counts leave scores alone
    texts = ["物流很快", "包装破损，很失望", "一般"]
    with running_server(tiny_bundle, cache_size=0) as (_, client):
        expected = [p.scores for p in client.predict(texts)]
    with running_server(tiny_bundle, mode=mode, sessions=2, cache_size=0) as (_, client):
        got = [p.scores for p in client.predict(texts)]
        assert client.info().execution_mode == mode
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-6)
