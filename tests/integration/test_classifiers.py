"""Named classifiers over real gRPC and HTTP channels on the tiny bundle: same answers as the request they stand
for, listed in GetModelInfo, reloaded when the file changes, clear statuses otherwise."""
import json

import grpc
import httpx
import pytest

from tests.conftest import running_server

TEXT = "国足三比零战胜对手"
SPEC = {"labels": ["体育", "财经", "科技"], "template": "这是一条{}消息",
        "examples": {"体育": ["球队夺冠", "主场比赛"], "财经": ["股市大涨"]}}


@pytest.fixture
def served(tiny_bundle, tmp_path):
    path = tmp_path / "classifiers.json"
    path.write_text(json.dumps({"classifiers": {"topics": SPEC}}, ensure_ascii=False), encoding="utf-8")
    # fp32: the same text gets the same embedding whatever it is batched with, so answers compare exactly
    with running_server(tiny_bundle, variant="fp32", http_port=0, classifiers=path,
                        classifiers_poll_s=0.01) as (running, client):
        yield running, client, path


def test_a_named_classifier_answers_what_the_request_it_stands_for_answers(served):
    running, client, _ = served
    assert len(running.engine._prototypes) >= 1  # warmed at start: its examples are already embedded
    by_name = client.classify_zero_shot([TEXT, "股价大跌"], classifier="topics")
    inline = client.classify_zero_shot([TEXT, "股价大跌"], SPEC["labels"], template=SPEC["template"],
                                       examples=SPEC["examples"])
    assert by_name == inline
    multi = client.classify_zero_shot(TEXT, classifier="topics", multi_label=True)
    assert multi == client.classify_zero_shot(TEXT, SPEC["labels"], template=SPEC["template"],
                                              examples=SPEC["examples"], multi_label=True)


def test_model_info_lists_the_classifiers(served):
    _, client, _ = served
    info = client.info()
    [topics] = info.classifiers
    assert topics.name == "topics" and list(topics.labels) == SPEC["labels"]
    assert topics.hypothesis_template == SPEC["template"] and dict(topics.examples) == {"体育": 2, "财经": 1}
    assert len(info.classifiers_version) == 12


def test_mixing_a_classifier_with_labels_or_naming_an_unknown_one_is_refused(served):
    running, client, _ = served
    with pytest.raises(grpc.RpcError) as error:
        client.classify_zero_shot(TEXT, ["体育"], classifier="topics")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "classifier 'topics' brings its own labels, template and examples; leave labels empty"
    with pytest.raises(grpc.RpcError) as error:
        client.classify_zero_shot(TEXT, classifier="spam")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "classifier 'spam' is not registered; registered: topics"
    with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
        ok = http.post("/v1/zero-shot", json={"texts": [TEXT], "classifier": "topics"})
        missing = http.post("/v1/zero-shot", json={"texts": [TEXT], "classifier": "spam"})
    assert ok.status_code == 200 and [s["label"] for s in ok.json()["results"][0]["labels"]] \
        == [label for label, _ in client.classify_zero_shot(TEXT, classifier="topics")[0].labels]
    assert missing.status_code == 404 and missing.json()["message"].startswith("classifier 'spam' is not registered")


def test_an_edited_file_is_served_and_a_broken_edit_keeps_the_old_one(served):
    running, client, path = served
    before = client.info().classifiers_version
    path.write_text(json.dumps({"classifiers": {"intents": {"labels": ["退款", "物流"]}}}, ensure_ascii=False),
                    encoding="utf-8")
    assert running.classifiers.wait_for_version(before, timeout=30)
    [result] = client.classify_zero_shot(TEXT, classifier="intents")
    assert sorted(label for label, _ in result.labels) == ["物流", "退款"]
    with pytest.raises(grpc.RpcError) as error:
        client.classify_zero_shot(TEXT, classifier="topics")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    version = client.info().classifiers_version
    path.write_text("{broken", encoding="utf-8")
    assert not running.classifiers.reload()  # what the watcher does on change, run here to wait for it
    assert client.info().classifiers_version == version
    assert client.classify_zero_shot(TEXT, classifier="intents")[0].labels


def test_a_bad_classifiers_file_stops_the_server_at_start(tiny_bundle, tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "bad.json"
    bad.write_text('{"classifiers": {"a": {"labels": []}}}', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "senti.server", "--bundle", str(tiny_bundle), "--port", "0",
                           "--http-port", "-1", "--metrics-port", "-1", "--classifiers", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "classifier 'a': labels is empty" in done.stderr
