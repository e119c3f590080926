"""The HTTP/JSON API against a real server on port 0: the same answers as gRPC, the error table, the NDJSON feed."""
import json

import grpc
import httpx
import pytest
from google.protobuf import json_format

from senti.server.http.routes import routes
from senti.server.http.status import HTTP_STATUS, parse_timeout
from senti.v1 import senti_pb2 as pb
from tests.conftest import running_server

TOKEN = "a-long-enough-test-token"
TEXTS = ["很好", "很差", "物流很快", "一般般吧，还行"]
LABELS = ["好评", "差评", "中评"]
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def http_server(tiny_bundle):
    """A real server with HTTP on a free port, and an HTTP client to it."""
    with running_server(tiny_bundle, http_port=0, max_texts_per_request=8, max_labels_per_request=5,
                        max_chars_per_text=2000, max_stream_in_flight=4, cache_size=0) as (running, client):
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            yield running, client, http


def parsed(response: httpx.Response, message_type):
    assert response.status_code == 200, response.text
    return json_format.Parse(response.text, message_type())


def test_routes_come_from_the_proto():
    assert {(r.rpc, r.verb, r.path) for r in routes()} == {
        ("Predict", "POST", "/v1/predict"), ("PredictStream", "POST", "/v1/predict:stream"),
        ("ClassifyZeroShot", "POST", "/v1/zero-shot"), ("GetModelInfo", "GET", "/v1/model-info")}


def test_http_and_grpc_answer_every_rpc_alike(tiny_bundle):
    # With the result cache on, the second transport gets the very rows the first computed: how the batcher
    # happened to group the texts (dynamic INT8 makes scores depend on batch-mates) cannot differ between them.
    with running_server(tiny_bundle, http_port=0) as (running, client):
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            grpc_predict = client.predict_with_metadata(TEXTS)
            http_predict = parsed(http.post("/v1/predict", json={"texts": TEXTS}), pb.PredictResponse)
            assert list(http_predict.predictions) == list(grpc_predict.predictions)
            assert http_predict.metadata.cache_hits == len(TEXTS)

            from senti.v1 import senti_pb2_grpc
            stub = senti_pb2_grpc.SentiServiceStub(client._channel)
            request = pb.ClassifyZeroShotRequest(texts=TEXTS, labels=LABELS, hypothesis_template="这是{}")
            grpc_zero_shot = stub.ClassifyZeroShot(request, timeout=30)
            http_zero_shot = parsed(http.post("/v1/zero-shot", json={"texts": TEXTS, "labels": LABELS,
                                                                    "hypothesisTemplate": "这是{}"}),
                                    pb.ClassifyZeroShotResponse)
            assert list(http_zero_shot.results) == list(grpc_zero_shot.results)
            assert parsed(http.get("/v1/model-info"), pb.GetModelInfoResponse) == client.info()


def test_http_feed_and_grpc_stream_answer_alike(tiny_bundle):
    # One item in flight: every item is a batch of one on both transports, so scores match exactly (dynamic
    # INT8 quantisation makes a text's score depend on its batch-mates).
    with running_server(tiny_bundle, http_port=0, max_stream_in_flight=1, cache_size=0) as (running, client):
        lines = "".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(TEXTS))
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            answers = http.post("/v1/predict:stream", content=lines.encode(), headers=NDJSON).text.splitlines()
        streamed = {}
        for line in answers:
            response = json_format.Parse(line, pb.PredictStreamResponse())
            streamed[response.id] = response.prediction
        grpc_streamed = {r.id: r.prediction for r in client.stream((str(i), t) for i, t in enumerate(TEXTS))}
    assert streamed.keys() == {"0", "1", "2", "3"}
    assert {key: p.label for key, p in streamed.items()} == {key: p.label for key, p in grpc_streamed.items()}
    assert {key: p.score for key, p in streamed.items()} == {key: p.score for key, p in grpc_streamed.items()}


def test_json_names_are_proto3_json(http_server):
    _, _, http = http_server
    body = http.post("/v1/predict", json={"texts": ["很好"]}).json()
    assert set(body["predictions"][0]) == {"label", "score", "scores", "polarity", "tokens", "truncated"}
    assert body["predictions"][0]["polarity"] in ("POLARITY_NEGATIVE", "POLARITY_POSITIVE")
    assert {"tokenizeUs", "queueUs", "inferenceUs", "totalUs", "batchSize", "cacheHits"} <= set(body["metadata"])
    # snake_case field names are accepted too, as protobuf's JSON parser does
    assert http.post("/v1/zero-shot", json={"texts": ["很好"], "labels": ["好", "坏"],
                                            "hypothesis_template": "{}"}).status_code == 200


@pytest.mark.parametrize("code, status", [
    ("INVALID_ARGUMENT", 400), ("UNAUTHENTICATED", 401), ("RESOURCE_EXHAUSTED", 429), ("FAILED_PRECONDITION", 400),
    ("UNAVAILABLE", 503), ("DEADLINE_EXCEEDED", 504), ("CANCELLED", 499), ("INTERNAL", 500), ("NOT_FOUND", 404)])
def test_status_mapping_is_googles(code, status):
    assert HTTP_STATUS[grpc.StatusCode[code]] == status


@pytest.mark.parametrize("value, seconds", [("500m", 0.5), ("2S", 2.0), ("1M", 60.0), ("250000u", 0.25)])
def test_grpc_timeout_header(value, seconds):
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("kwargs, status, code, message", [
    ({"json": {"texts": [""]}}, 400, 3, "texts[0] is empty"),
    ({"json": {"texts": ["好"] * 9}}, 400, 3, "texts has 9 items; the limit is 8"),
    ({"json": {"textz": ["好"]}}, 400, 3, 'has no field named "textz"'),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, 3, "Failed to load JSON"),
    ({"content": b"{\"texts\": [\"\xff\"]}", "headers": {"content-type": "application/json"}}, 400, 3, "not valid UTF-8"),
    ({"json": {"texts": "not a list"}}, 400, 3, "PredictRequest in proto3 JSON"),
    ({"content": b"texts=x", "headers": {"content-type": "text/plain"}}, 415, 3, "content-type must be application/json"),
    ({"content": b"", "headers": {}}, 415, 3, "content-type must be application/json, not 'missing'"),
    ({"json": {"texts": ["好"]}, "headers": {"grpc-timeout": "soon"}}, 400, 3, "grpc-timeout 'soon' is not"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(http_server, kwargs, status, code, message):
    _, _, http = http_server
    response = http.post("/v1/predict", **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code and message in body["message"], body
    assert http.post("/v1/predict", json={"texts": ["还好"]}).status_code == 200


def test_a_50_mb_body_is_refused_with_413(http_server):
    _, _, http = http_server
    big = b'{"texts": ["' + b"x" * (50 * 1024 * 1024) + b'"]}'
    response = http.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "the limit is" in response.json()["message"]

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(50):
            yield b"x" * (1024 * 1024)
    response = http.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over the limit" in response.json()["message"]
    assert http.post("/v1/predict", json={"texts": ["还好"]}).status_code == 200


def test_unknown_paths_and_methods_are_status_json(http_server):
    _, _, http = http_server
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    wrong = http.get("/v1/predict")
    assert wrong.status_code == 405 and "GET is not allowed" in wrong.json()["message"]


def test_request_id_is_echoed_and_made_up_when_missing(http_server):
    _, _, http = http_server
    assert http.post("/v1/predict", json={"texts": ["好"]}, headers={"x-request-id": "abc-1"}).headers[
        "x-request-id"] == "abc-1"
    assert len(http.post("/v1/predict", json={"texts": ["好"]}).headers["x-request-id"]) == 32


def test_metrics_are_labelled_by_transport(http_server):
    running, client, http = http_server
    def count(transport):
        return running.metrics.registry.get_sample_value(
            "senti_requests_total", {"rpc": "Predict", "code": "OK", "transport": transport}) or 0.0
    before = count("http"), count("grpc")
    http.post("/v1/predict", json={"texts": ["好"]})
    client.predict("好")
    assert (count("http"), count("grpc")) == (before[0] + 1, before[1] + 1)


def test_feed_answers_each_line_once_and_bad_lines_get_their_own_error(http_server):
    _, _, http = http_server
    good = [{"id": f"g{i}", "text": t} for i, t in enumerate(TEXTS * 3)]
    lines = [json.dumps(g, ensure_ascii=False) for g in good[:5]]
    lines += ["this is not json", json.dumps({"id": "empty", "text": "   "}), json.dumps({"id": "x", "txt": "好"}),
              "", json.dumps({"id": "long", "text": "好" * 9000})]
    lines += [json.dumps(g, ensure_ascii=False) for g in good[5:]]
    response = http.post("/v1/predict:stream", content=("\n".join(lines)).encode(), headers=NDJSON)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    answers = [json.loads(line) for line in response.text.splitlines()]
    ok = {a["id"] for a in answers if "prediction" in a}
    errors = {a["id"]: a["error"] for a in answers if "error" in a}
    assert ok == {g["id"] for g in good}
    assert len(answers) == len(good) + 4  # the blank line is skipped, every other line is answered once
    assert errors["empty"]["code"] == 3 and "is empty" in errors["empty"]["message"]
    assert errors["x"]["code"] == 3 and 'no field named "txt"' in errors["x"]["message"]
    # lines whose id cannot be read are answered with an empty id and their line number
    unnamed = sorted(a["error"]["message"] for a in answers if a["id"] == "")
    assert len(unnamed) == 2 and all(a["error"]["code"] == 3 for a in answers if a["id"] == "")
    assert unnamed[0].startswith("line 10 is not a PredictStreamRequest") and "over the size limit" in unnamed[0]
    assert unnamed[1].startswith("line 6 is not a PredictStreamRequest") and "Failed to load JSON" in unnamed[1]


def test_feed_needs_ndjson(http_server):
    _, _, http = http_server
    response = http.post("/v1/predict:stream", json={"id": "1", "text": "好"})
    assert response.status_code == 415 and "application/x-ndjson" in response.json()["message"]


def test_readiness_follows_grpc_health(tiny_bundle):
    with running_server(tiny_bundle, http_port=0, warm=False) as (running, client):
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            assert http.get("/healthz").json() == {"status": "SERVING"}
            not_ready = http.get("/readyz")
            assert not_ready.status_code == 503 and not_ready.json() == {"status": "NOT_SERVING"}
            assert client.health() == "NOT_SERVING"
            refused = http.post("/v1/predict", json={"texts": ["好"]})
            assert refused.status_code == 503 and refused.json()["code"] == 14
            running.engine.warm_up()
            running.set_serving(True)
            assert http.get("/readyz").status_code == 200 and client.health() == "SERVING"
            running.set_serving(False)  # what a drain does first
            assert http.get("/readyz").status_code == 503


def test_auth_and_rate_limit_are_the_same_policy_as_grpc(tiny_bundle):
    with running_server(tiny_bundle, http_port=0, auth_tokens=f"tester:{TOKEN}", rate_limit_rps=1.0,
                        rate_limit_burst=1) as (running, _):
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            missing = http.post("/v1/predict", json={"texts": ["好"]})
            assert missing.status_code == 401 and "bearer token" in missing.json()["message"]
            wrong = http.post("/v1/predict", json={"texts": ["好"]}, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert http.get("/readyz").status_code == 200  # health needs no token
            auth = {"authorization": f"Bearer {TOKEN}"}
            assert http.post("/v1/predict", json={"texts": ["好"]}, headers=auth).status_code == 200
            limited = http.post("/v1/predict", json={"texts": ["好"]}, headers=auth)
            assert limited.status_code == 429 and limited.json()["code"] == 8
            assert int(limited.headers["retry-after"]) >= 1 and int(limited.headers["retry-after-ms"]) > 0
            feed = http.post("/v1/predict:stream", content='{"id":"1","text":"好"}\n'.encode(), headers=NDJSON)
            assert feed.status_code == 401
    assert running.metrics.registry.get_sample_value("senti_rejected_total", {"reason": "unauthenticated"}) >= 3


def test_line_splitter_keeps_lines_whole_across_chunks_and_drops_overlong_ones():
    from senti.server.http.feed import LineSplitter
    splitter = LineSplitter(limit=8)
    lines = list(splitter.feed(b"ab\ncd")) + list(splitter.feed(b"e\n\x00x\n"))
    lines += list(splitter.feed(b"0123456789")) + list(splitter.feed(b"abc\nok\nlast"))
    lines += list(splitter.end())
    assert lines == [b"ab", b"cde", b"\x00x", None, b"ok", b"last"]
    assert list(splitter.end()) == []


def test_http_sockets_send_without_nagle(http_server):
    """uvicorn writes a response's head and body apart: with Nagle on, the body waits ~40 ms for a delayed ACK."""
    import socket
    running, _, _ = http_server
    listening = running.http_server.socket
    assert listening.proto == socket.IPPROTO_TCP  # what asyncio checks before it sets TCP_NODELAY on connections
    assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
