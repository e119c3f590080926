"""HTTP callers that go away or run out of time free their queued work, as gRPC callers do (the model is gated)."""
import json
import socket

import grpc
import httpx
import pytest

from senti.v1 import senti_pb2 as pb
from tests.reliability.conftest import sample, serving
from tests.reliability.test_overload_and_cancel import WAIT, gated_server, hold_the_worker, items_run


def raw_request(port: int, path: str, body: bytes, content_type: str, *, chunked: bool = False) -> socket.socket:
    """Sends a request on a plain socket and returns it unread, so the test can hang up at a moment it chooses."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
    if chunked:
        head += "transfer-encoding: chunked\r\n\r\n"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n"  # one chunk, and the body never ends
    else:
        head += f"content-length: {len(body)}\r\n\r\n"
        payload = body
    sock.sendall(head.encode() + payload)
    return sock


def test_a_disconnected_http_caller_frees_its_queued_work(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, http_port=0) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        before = items_run(running)
        body = json.dumps({"texts": ["甲", "乙乙", "丙丙丙"]}).encode()
        sock = raw_request(running.http_port, "/v1/predict", body, "application/json")
        probe.wait_for(lambda p: p.submitted >= 4)
        sock.close()  # the caller hangs up while its three texts wait behind the gate
        probe.wait_for(lambda p: p.cancels >= 1)
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")
        assert running.engine.models[0].executor.stats.skipped_cancelled == 3
        assert items_run(running) - before == 2  # the blocker and the last request: nothing of the gone caller


def test_a_feed_whose_uploader_disconnects_frees_its_queued_work(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, http_port=0, max_stream_in_flight=8) as (running, client, stub,
                                                                                          probe):
        blocker = hold_the_worker(stub, probe)
        before = items_run(running)
        lines = "".join(json.dumps({"id": str(i), "text": f"第{i}条评论"}, ensure_ascii=False) + "\n"
                        for i in range(3))
        sock = raw_request(running.http_port, "/v1/predict:stream", lines.encode(), "application/x-ndjson",
                           chunked=True)
        probe.wait_for(lambda p: p.submitted >= 4)
        sock.close()  # mid-feed: the body never ended
        probe.wait_for(lambda p: p.cancels >= 1)
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")
        assert running.engine.models[0].executor.stats.skipped_cancelled == 3
        assert items_run(running) - before == 2
        assert sample(running.metrics, "senti_in_flight_streams") == 0
        assert sample(running.metrics, "senti_requests_total",
                      {"rpc": "PredictStream", "code": "CANCELLED", "transport": "http"}) == 1


def test_a_grpc_timeout_header_is_the_deadline(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, http_port=0) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=WAIT) as http:
            late = http.post("/v1/predict", json={"texts": ["等不及了"]}, headers={"grpc-timeout": "300m"})
        assert late.status_code == 504 and late.json()["code"] == 4
        probe.gate.set()
        assert blocker.result().predictions
        assert running.engine.models[0].executor.stats.skipped_deadline >= 1


def test_admission_is_shared_by_both_transports(tiny_bundle, monkeypatch):
    # One slot, held by a gRPC call at the gate: an HTTP call is refused at once, with a hint.
    with gated_server(tiny_bundle, monkeypatch, http_port=0, max_concurrent_rpcs=1) as (running, client, stub,
                                                                                       probe):
        blocker = hold_the_worker(stub, probe)
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=WAIT) as http:
            refused = http.post("/v1/predict", json={"texts": ["挤不进去"]})
        assert refused.status_code == 429 and "concurrent requests" in refused.json()["message"]
        assert int(refused.headers["retry-after-ms"]) >= 1
        probe.gate.set()
        assert blocker.result().predictions
        assert sample(running.metrics, "senti_rejected_total", {"reason": "concurrency"}) == 1


def test_an_http_call_holds_a_slot_that_grpc_then_lacks(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, http_port=0, max_concurrent_rpcs=1) as (running, client, stub,
                                                                                       probe):
        sock = raw_request(running.http_port, "/v1/predict", json.dumps({"texts": ["占着"]}).encode(),
                           "application/json")
        assert probe.entered.wait(WAIT)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(pb.PredictRequest(texts=["挤不进去"]), timeout=WAIT)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        probe.gate.set()
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        sock.close()
        assert sample(running.metrics, "senti_rejected_total", {"reason": "concurrency"}) == 1


def test_a_feed_holds_at_most_max_stream_in_flight_lines_in_the_engine(tiny_bundle, monkeypatch):
    """However fast the upload, the feed submits a line only when an answer freed a slot."""
    import threading
    from senti.model.batcher import Batcher
    in_flight, lines_sent = 3, 200
    lock, outstanding, worst = threading.Lock(), [0], [0]
    submit = Batcher.submit

    def counted(batcher, encoded, deadline=None):
        future = submit(batcher, encoded, deadline)
        with lock:
            outstanding[0] += 1
            worst[0] = max(worst[0], outstanding[0])

        def done(_):
            with lock:
                outstanding[0] -= 1
        future.add_done_callback(done)
        return future

    with serving(tiny_bundle, http_port=0, max_stream_in_flight=in_flight, cache_size=0) as (running, client):
        monkeypatch.setattr(Batcher, "submit", counted)
        body = "".join(json.dumps({"id": str(i), "text": f"第{i}条"}, ensure_ascii=False) + "\n"
                       for i in range(lines_sent)).encode()
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=WAIT) as http:
            answers = http.post("/v1/predict:stream", content=body, headers={"content-type": "application/x-ndjson"})
    ids = sorted(int(json.loads(line)["id"]) for line in answers.text.split("\n") if line)
    assert ids == list(range(lines_sent))
    assert 1 <= worst[0] <= in_flight
