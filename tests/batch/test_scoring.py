"""The actor's work without Ray: the serving engine scores a shard with the API's fields and values, bad rows
get the API's error code and message, and results go back to input order."""
import math

import pytest

from tests.batch.conftest import require

pa = require("pyarrow")

from senti.batch.inputs import Records  # noqa: E402
from senti.batch.outputs import schema  # noqa: E402
from senti.batch.scoring import ERROR_CODES, Scorer, ScoringSpec, length_order  # noqa: E402
from tests.conftest import running_server  # noqa: E402
from tests.tiny_bundles import TINY_MAX_LENGTH, TINY_NEGATIVE, TINY_POSITIVE  # noqa: E402

LABELS = ("物流", "质量", "价格")


def records(texts, ids=None, errors=None) -> Records:
    out = Records()
    for i, text in enumerate(texts):
        out.add(i, (ids or [str(k) for k in range(len(texts))])[i], text, (errors or {}).get(i))
    return out


@pytest.fixture(scope="module")
def scorers(tiny_bundle, tmp_path_factory):
    """Scorers over the tiny bundle: one text per forward pass (as one-text requests are served), and the
    default batching; sentiment and zero-shot."""
    out = str(tmp_path_factory.mktemp("scored"))
    made = {}
    for name, task, batch in (("sentiment-1", "sentiment", 1), ("sentiment", "sentiment", 32),
                              ("zeroshot-1", "zeroshot", 1), ("zeroshot", "zeroshot", 32)):
        made[name] = Scorer(ScoringSpec(task=task, bundles=(str(tiny_bundle),), out=out, block_rows=200,
                                        labels=LABELS if task == "zeroshot" else (), max_batch_size=batch,
                                        sessions=2, max_chars_per_text=2000))
    yield made
    for scorer in made.values():
        scorer.close()


def test_error_codes_are_the_servers():
    from senti.server.errors import STATUS_OF
    assert {kind: code.name for kind, code in STATUS_OF.items()} == dict(ERROR_CODES)


def test_output_columns_are_the_apis_fields_plus_id_row_and_error():
    from senti.v1 import senti_pb2 as pb
    for task, message in (("sentiment", pb.Prediction), ("zeroshot", pb.ZeroShotResult)):
        names = schema(task, "comment_id", pa.string()).names
        assert names[:2] == ["comment_id", "row"] and names[-2:] == ["error", "error_code"]
        assert names[2:-2] == [f.json_name for f in message.DESCRIPTOR.fields]


def test_sentiment_is_what_the_api_answers(tiny_bundle, scorers):
    texts = TINY_POSITIVE + TINY_NEGATIVE
    table = scorers["sentiment-1"].score(records(texts)).to_pydict()
    assert table["error"] == [None] * len(texts)
    # the tiny head's contract: fitted phrases, one per request, get their fitted label
    assert table["label"] == ["positive"] * len(TINY_POSITIVE) + ["negative"] * len(TINY_NEGATIVE)
    with running_server(tiny_bundle, max_batch_size=1) as (_running, client):
        for i, text in enumerate(texts):
            [served] = client.predict(text)
            assert table["label"][i] == served.label
            assert math.isclose(table["score"][i], served.score, rel_tol=1e-6)  # the API sends float32
            assert {s["label"]: s["score"] for s in table["scores"][i]} == pytest.approx(served.scores, rel=1e-6)
            assert table["polarity"][i] == f"POLARITY_{served.polarity.upper()}"
            assert (table["tokens"][i], table["truncated"][i]) == (served.tokens, served.truncated)


def test_zero_shot_is_what_the_api_answers(tiny_bundle, scorers):
    texts = ["物流很快", "质量很差", "价格太贵", "包装精美"]
    table = scorers["zeroshot-1"].score(records(texts)).to_pydict()
    with running_server(tiny_bundle, max_batch_size=1) as (_running, client):
        for i, text in enumerate(texts):
            [served] = client.classify_zero_shot(text, list(LABELS))
            assert [entry["label"] for entry in table["labels"][i]] == [label for label, _ in served.labels]
            assert [entry["score"] for entry in table["labels"][i]] == pytest.approx(
                [score for _, score in served.labels], rel=1e-5, abs=1e-7)


def test_bad_rows_get_the_apis_error_and_never_stop_the_shard(scorers):
    texts = ["很好", None, "", "   ", 42, "\ud800 lone surrogate", "好" * 2001, "很差", "读不出的行"]
    table = scorers["sentiment"].score(records(texts, errors={8: "the line is not valid JSON: ..."})).to_pydict()
    codes = table["error_code"]
    assert codes == [None, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                     "INVALID_ARGUMENT", "INVALID_ARGUMENT", None, "INVALID_ARGUMENT"]
    assert "missing" in table["error"][1]
    assert table["error"][2] == "text is empty or only whitespace"  # the engine's own message
    assert "not int" in table["error"][4]
    assert "UTF-8" in table["error"][5]
    assert "2001 characters; the limit is 2000" in table["error"][6]
    assert table["error"][8].startswith("the line is not valid JSON")
    assert table["id"] == [str(i) for i in range(len(texts))]
    for i in (0, 7):
        assert table["label"][i] in ("positive", "negative") and table["error"][i] is None
    for i in (1, 2, 3, 4, 5, 6, 8):
        assert table["label"][i] is None and table["scores"][i] is None


def test_batched_results_go_back_to_input_order(scorers):
    # lengths out of order; the tiny tokenizer reads one token per character, plus "query:" and <s> </s>
    texts = ["好" * n for n in (30, 1, 17, 5, 30, 2, 9, 50, 3)] + ["很好很好"] * 40
    table = scorers["sentiment"].score(records(texts)).to_pydict()
    assert table["tokens"] == [min(TINY_MAX_LENGTH, len(t) + 6 + 2) for t in texts]
    assert table["row"] == list(range(len(texts)))
    for scores, label, score in zip(table["scores"], table["label"], table["score"]):
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)
        assert max(scores, key=lambda s: s["score"]) == {"label": label, "score": score}
    zs = scorers["zeroshot"].score(records(texts)).to_pydict()
    for labels in zs["labels"]:
        assert sorted(entry["label"] for entry in labels) == sorted(LABELS)
        assert [e["score"] for e in labels] == sorted((e["score"] for e in labels), reverse=True)
        assert sum(e["score"] for e in labels) == pytest.approx(1.0, abs=1e-5)


def test_strict_mode_makes_a_too_long_text_one_error_row(tiny_bundle, tmp_path):
    long_text = "好" * (TINY_MAX_LENGTH + 10)
    texts = ["很好", long_text, "很差"]
    for task in ("sentiment", "zeroshot"):
        spec = dict(task=task, bundles=(str(tiny_bundle),), out=str(tmp_path), block_rows=10, sessions=1,
                    labels=LABELS if task == "zeroshot" else ())
        lenient = Scorer(ScoringSpec(**spec))
        strict = Scorer(ScoringSpec(**spec, strict=True))
        try:
            assert lenient.score(records(texts)).to_pydict()["truncated"] == [False, True, False]
            table = strict.score(records(texts)).to_pydict()
            assert table["error_code"] == [None, "INVALID_ARGUMENT", None]
            assert "longer than the model's" in table["error"][1]
        finally:
            lenient.close()
            strict.close()


def test_length_order_is_shortest_first_and_stable():
    assert length_order(["ccc", "a", "bb", "a", ""]) == [4, 1, 3, 2, 0]


def test_a_shard_goes_to_the_engine_in_one_call_with_errors_per_text(tiny_bundle, tmp_path):
    from senti.model.errors import InvalidInput
    scorer = Scorer(ScoringSpec(task="sentiment", bundles=(str(tiny_bundle),), out=str(tmp_path), cache_size=0))
    try:
        assert scorer.engine.ready  # started cold: the first shard is the warm-up
        texts = ["物流很快", "", "包装破损，很失望"]
        futures = scorer.engine.submit_sentiments(texts)
        with pytest.raises(InvalidInput, match=r"^texts\[1\] is empty"):
            futures[1].result(30)
        for text, future in zip(texts[::2], futures[::2]):
            alone = scorer.engine.submit_sentiment(text).result(30)
            assert dict(future.result(30).scores) == pytest.approx(dict(alone.scores), abs=1e-6)
    finally:
        scorer.close()
