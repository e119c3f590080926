"""Few-shot ClassifyZeroShot (examples per label) over a real channel, on tiny bundles built in the session.

Nothing here assumes what the random tiny encoder outputs on a text: scores are compared with a direct
computation (tokenizer, the bundle's fp32 ONNX model one text at a time, heads.fewshot_prototype), or hold by
construction (examples identical to the query make its label's prototype the query's own embedding).
"""
import json
import shutil

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from senti.model.engine import FEWSHOT_DEFAULTS, Engine, EngineConfig
from senti.model.heads import fewshot_prototype, sigmoid, softmax
from senti.model.validation import Limits
from tests.conftest import running_server

TEXT = "国足三比零战胜对手"
LABELS = ["体育", "财经", "科技"]
EXAMPLES = {"体育": ["球队夺冠", "主场比赛", "球员转会", "联赛积分"], "财经": ["股市大涨", "央行降息"]}


def embed(bundle, texts, prefix):
    """fp32 embeddings straight from the bundle's ONNX model, one text at a time (no batching, no padding)."""
    meta = json.loads((bundle / "bundle.json").read_text())
    tok = Tokenizer.from_file(str(bundle / meta["files"]["tokenizer"]))
    session = ort.InferenceSession(str(bundle / meta["files"]["model_fp32"]), providers=["CPUExecutionProvider"])
    out = []
    for text in texts:
        ids = np.array([tok.encode(prefix + text).ids], dtype=np.int64)
        out.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return np.stack(out)


def expected_scores(bundle, text, labels, examples, multi_label=False):
    """What the engine should answer, computed here from the formula and direct embeddings."""
    meta = json.loads((bundle / "bundle.json").read_text())
    settings = {**FEWSHOT_DEFAULTS, **meta["zeroshot"]}
    template, prefix = settings["template"], settings.get("hypothesis_prefix")
    hypotheses = embed(bundle, [template.replace("{}", label) for label in labels],
                       meta["text_prefix"] if prefix is None else prefix)
    center = settings.get("multi_label_center", 0.82)
    prototypes = [
        fewshot_prototype(h, embed(bundle, examples[label], meta["text_prefix"]) if label in examples
                          else np.zeros((0, len(h)), np.float32), settings["fewshot_k"], center,
                          settings["fewshot_example_center"])
        for label, h in zip(labels, hypotheses)]
    margin = (embed(bundle, [text], meta["text_prefix"])[0] @ np.stack([p for p, _ in prototypes]).T
              - np.array([b for _, b in prototypes]))
    if multi_label:
        return sigmoid(margin / settings["fewshot_multi_label_temperature"])
    return softmax(margin / settings["fewshot_temperature"])


@pytest.fixture(scope="module")
def fp32_server(tiny_bundle):
    # fp32: dynamic INT8 scales activations per batch, so an INT8 embedding depends on its batch-mates; fp32 gives
    # each text the embedding the one-at-a-time reference computes
    with running_server(tiny_bundle, variant="fp32") as pair:
        yield pair


def test_examples_score_against_prototypes_as_computed_directly(fp32_server, tiny_bundle):
    _, client = fp32_server
    # 科技 has no examples: it keeps its hypothesis (a prototype with n = 0)
    [result] = client.classify_zero_shot(TEXT, LABELS, examples=EXAMPLES)
    want = expected_scores(tiny_bundle, TEXT, LABELS, EXAMPLES)
    assert [dict(result.labels)[label] for label in LABELS] == pytest.approx(list(want), abs=1e-4)
    scores = [s for _, s in result.labels]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    [multi] = client.classify_zero_shot(TEXT, LABELS, examples=EXAMPLES, multi_label=True)
    want = expected_scores(tiny_bundle, TEXT, LABELS, EXAMPLES, multi_label=True)
    assert [dict(multi.labels)[label] for label in LABELS] == pytest.approx(list(want), abs=1e-4)


def test_examples_change_the_scores_and_without_them_nothing_changes(fp32_server):
    _, client = fp32_server
    before = client.classify_zero_shot(TEXT, LABELS)
    with_examples = client.classify_zero_shot(TEXT, LABELS, examples=EXAMPLES)
    after = client.classify_zero_shot(TEXT, LABELS)
    assert dict(with_examples[0].labels) != dict(before[0].labels)
    assert after == before


def test_examples_identical_to_the_query_make_its_label_win(tiny_bundle, tmp_path):
    # With k = 0 a label's prototype is its examples' mean direction, with the same bias (the example center) for
    # every label that has examples; examples all equal to the query make it the query's own embedding, cosine 1,
    # which no other unit vector beats: that label scores highest, whatever the model.
    bundle = tmp_path / "k0"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["zeroshot"].update(fewshot_k=0.0, fewshot_example_center=1.0, fewshot_multi_label_temperature=0.05)
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    with running_server(bundle, variant="fp32") as (_, client):
        for label in LABELS:
            others = {other: ["股市大涨", "央行降息"] for other in LABELS if other != label}
            [result] = client.classify_zero_shot(TEXT, LABELS, examples={label: [TEXT, TEXT], **others})
            assert result.best == label
            [multi] = client.classify_zero_shot(TEXT, LABELS, examples={label: [TEXT], **others}, multi_label=True)
            # sigmoid((1 - 1) / T) = 0.5: the query's cosine to its own embedding is 1
            assert dict(multi.labels)[label] == pytest.approx(0.5, abs=1e-3)


def test_a_repeated_label_set_costs_no_model_work(tiny_bundle):
    batches = []
    engine = Engine.load([tiny_bundle], EngineConfig(sessions=1, intra_op_threads=1),
                         observer=lambda event: batches.append(event.size))
    try:
        engine.warm_up()
        batches.clear()
        first, _ = engine.classify_zero_shot([TEXT], LABELS, examples=list(EXAMPLES.items()))
        # the query, 6 example texts and 3 hypotheses went through the model
        assert sum(batches) == 1 + 6 + 3
        batches.clear()
        again, timing = engine.classify_zero_shot([TEXT], LABELS, examples=list(EXAMPLES.items()))
        assert batches == [] and timing.cache_hits == 1 and again == first
        # the same examples with new texts: only the texts are embedded
        engine.classify_zero_shot(["股价大跌", "新款手机发布"], LABELS, examples=list(EXAMPLES.items()))
        assert sum(batches) == 2
        # a request without examples touches no prototype, and its cached hypotheses are those of before
        batches.clear()
        prototypes = len(engine._prototypes)
        engine.classify_zero_shot([TEXT], LABELS)
        assert batches == [] and len(engine._prototypes) == prototypes
        # a text shared by two labels' examples is embedded once; a changed example set is a new prototype
        batches.clear()
        engine.classify_zero_shot([TEXT], LABELS, examples=[("体育", ["同一句话"]), ("科技", ["同一句话", "芯片"])])
        assert sum(batches) == 2 and len(engine._prototypes) == prototypes + 2
    finally:
        engine.close()


def test_no_examples_is_the_plain_zero_shot_path(tiny_bundle, monkeypatch):
    engine = Engine.load([tiny_bundle], EngineConfig(sessions=1, intra_op_threads=1))
    try:
        engine.warm_up()
        monkeypatch.setattr(engine, "_prototype_rows", lambda *a, **k: pytest.fail("prototypes built"))
        monkeypatch.setattr("senti.model.engine.check_examples", lambda *a, **k: pytest.fail("examples checked"))
        [result], _ = engine.classify_zero_shot([TEXT], LABELS)
        assert sorted(dict(result.labels)) == sorted(LABELS)
    finally:
        engine.close()


@pytest.mark.parametrize("examples, message", [
    ({"足球": ["球赛"]}, "examples[0].label '足球' is not one of labels"),
    ({"体育": []}, "examples[0] ('体育') has no texts; give at least one or leave the label out"),
    ({"体育": ["球赛", "   "]}, "examples[0].texts[1] is empty or only whitespace"),
    ({"体育": ["赛" * 2001]}, "examples[0].texts[0] has 2001 characters; the limit is 2000"),
    ({"体育": ["a", "b", "c", "d"]}, "examples[0] ('体育') has 4 texts; the limit is 3 per label"),
    ({"体育": ["a", "b", "c"], "财经": ["d", "e", "f"]}, "examples have 6 texts in all; the limit is 5 per request"),
])
def test_bad_examples_are_invalid_argument(tiny_server, examples, message):
    _, client = tiny_server
    with pytest.raises(grpc.RpcError) as err:
        client.classify_zero_shot(TEXT, LABELS, examples=examples)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message


def test_a_label_named_twice_in_examples_is_invalid_argument(tiny_server):
    from senti.v1 import senti_pb2 as pb
    from senti.v1 import senti_pb2_grpc
    running, _ = tiny_server
    stub = senti_pb2_grpc.SentiServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    request = pb.ClassifyZeroShotRequest(texts=[TEXT], labels=LABELS, examples=[
        pb.LabelExamples(label="体育", texts=["球赛"]), pb.LabelExamples(label="体育", texts=["赛跑"])])
    with pytest.raises(grpc.RpcError) as err:
        stub.ClassifyZeroShot(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "examples[1].label '体育' repeats examples[0].label"


def test_limits_are_reported(tiny_server):
    _, client = tiny_server
    limits = client.info().limits
    assert (limits.max_examples_per_label, limits.max_examples_per_request) == (3, 5)
    assert (Limits().max_examples_per_label, Limits().max_examples_per_request) == (256, 512)


def test_an_nli_bundle_answers_failed_precondition(tiny_bundle, tmp_path):
    # An NLI-kind bundle (the tiny encoder's outputs read as pair logits): zero-shot works, examples cannot.
    bundle = tmp_path / "nli"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta.update(kind="nli", tasks=["zeroshot"], name="tiny-nli", nli={"template": "{}", "entailment_id": 0,
                                                                        "contradiction_id": 2})
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    with running_server(tiny_bundle, zeroshot_bundle=bundle) as (_, client):
        assert len(client.classify_zero_shot(TEXT, LABELS)[0].labels) == 3
        with pytest.raises(grpc.RpcError) as err:
            client.classify_zero_shot(TEXT, LABELS, examples={"体育": ["球赛"]})
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "NLI bundle 'tiny-nli'" in err.value.details() and "cannot use examples" in err.value.details()
