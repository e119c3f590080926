"""The wire below the API: garbage bytes on both ports, malformed gRPC frames over real HTTP/2, and fuzzed HTTP/JSON
bodies. Zero crashes: each answer is a documented status (or the connection is closed), and the server serves on."""
import json
import socket
import struct

import grpc
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability.conftest import sample, serving
from tests.reliability.test_fuzz import FUZZ

# HTTP statuses the HTTP API documents for a request the caller got wrong.
HTTP_DOCUMENTED = {200, 400, 404, 405, 413, 415, 429}
# grpc-status values a malformed frame may get: gRPC's own parse errors (INTERNAL for a frame it cannot parse,
# RESOURCE_EXHAUSTED for one over the size limit, UNIMPLEMENTED for an unknown method) or the server's
# INVALID_ARGUMENT for a message that is not valid protobuf.
GRPC_FRAME_STATUSES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.OK}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@pytest.fixture(scope="module")
def wire(tiny_bundle):
    """A server with HTTP on, for the whole module."""
    with serving(tiny_bundle, http_port=0, max_texts_per_request=8, max_chars_per_text=2000) as (running, client):
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            yield running, client, http


def send_raw(port: int, data: bytes) -> bytes:
    """Writes bytes to a fresh TCP connection and reads what comes back until the peer closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except (ConnectionResetError, BrokenPipeError, TimeoutError, socket.timeout):
            return b""


def grpc_frames(port: int, method: str, body: bytes, headers: dict | None = None) -> grpc.StatusCode | None:
    """One call over a hand-made HTTP/2 connection whose DATA is `body` as given (not a valid gRPC frame
    necessarily); the grpc-status of the answer, or None when the server reset the stream."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    request = {":method": "POST", ":scheme": "http", ":authority": f"127.0.0.1:{port}",
               ":path": f"/senti.v1.SentiService/{method}", "content-type": "application/grpc", "te": "trailers"}
    request.update(headers or {})
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, list(request.items()))
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        while True:
            data = sock.recv(65536)
            if not data:
                return status
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    found = dict(event.headers).get("grpc-status")
                    if found is not None:
                        status = _CODES[int(found)]
                if isinstance(event, h2.events.StreamEnded) or isinstance(event, h2.events.StreamReset):
                    return status
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            sock.sendall(conn.data_to_send())


def predict_frame(payload: bytes, *, compressed: int = 0, declared: int | None = None) -> bytes:
    """A gRPC length-prefixed message: flag byte, 4-byte big-endian length (as declared), payload."""
    return struct.pack(">BI", compressed, len(payload) if declared is None else declared) + payload


GOOD = b"\x0a\x06" + "很好".encode()  # PredictRequest{texts: ["很好"]}


@pytest.mark.parametrize("name, body, headers", [
    ("length says more than sent", predict_frame(GOOD, declared=100), None),
    ("length says 4 GB", predict_frame(b"", declared=0xFFFFFFFF), None),
    ("compressed flag, no encoding", predict_frame(GOOD, compressed=1), None),
    ("compressed with an unknown encoding", predict_frame(GOOD, compressed=1), {"grpc-encoding": "zstd-ish"}),
    ("bad flag byte", predict_frame(GOOD, compressed=7), None),
    ("half a prefix", b"\x00\x00", None),
    ("not protobuf", predict_frame(b"\xff\xff\xff\xff"), None),
    ("two messages on a unary call", predict_frame(GOOD) + predict_frame(GOOD), None),
    ("empty body", b"", None),
])
def test_malformed_grpc_frames_get_a_status_and_the_server_serves_on(wire, name, body, headers):
    running, client, _ = wire
    status = grpc_frames(running.port, "Predict", body, headers)
    assert status is None or status in GRPC_FRAME_STATUSES, (name, status)
    assert client.predict("还好")[0].label in ("negative", "positive")


def test_unknown_method_and_wrong_content_type(wire):
    running, client, _ = wire
    assert grpc_frames(running.port, "NoSuchMethod", predict_frame(GOOD)) == grpc.StatusCode.UNIMPLEMENTED
    # gRPC's core reads the frame whatever the content type says: an answer, never a crash
    status = grpc_frames(running.port, "Predict", predict_frame(GOOD), {"content-type": "text/plain"})
    assert status is None or status in GRPC_FRAME_STATUSES
    assert client.health() == "SERVING"


@FUZZ
@given(garbage=st.one_of(st.binary(max_size=512), st.just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64),
                         st.just(b"GET / HTTP/1.1\r\n\r\n")))
def test_garbage_bytes_on_either_port_never_hurt_the_server(wire, garbage):
    running, client, _ = wire
    send_raw(running.port, garbage)
    answer = send_raw(running.http_port, garbage)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 ")  # an HTTP answer or a closed connection
    assert client.health() == "SERVING"


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=20)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
bodies = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                   st.fixed_dictionaries({"texts": st.lists(st.text(max_size=30), max_size=10)},
                                         optional={"strict": json_values, "labels": json_values,
                                                   "hypothesisTemplate": json_values}).map(
                       lambda v: json.dumps(v, ensure_ascii=False).encode()),
                   st.binary(max_size=200))


@FUZZ
@given(path=st.sampled_from(["/v1/predict", "/v1/zero-shot"]), body=bodies,
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]))
def test_fuzzed_http_bodies_get_documented_statuses(wire, path, body, content_type):
    _, _, http = wire
    response = http.post(path, content=body, headers={"content-type": content_type} if content_type else {})
    assert response.status_code in HTTP_DOCUMENTED, (response.status_code, response.text)
    if response.status_code != 200:
        assert set(response.json()) == {"code", "message", "details"}


@FUZZ
@given(lines=st.lists(st.one_of(bodies, st.binary(max_size=40)), max_size=12))
def test_fuzzed_feed_lines_each_get_an_answer_line(wire, lines):
    _, _, http = wire
    body = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    response = http.post("/v1/predict:stream", content=body, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 200
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert len(answers) == sum(1 for line in body.split(b"\n") if line.strip())
    assert all(("prediction" in a) != ("error" in a) for a in answers)


def test_after_the_wire_fuzz_nothing_failed_inside(wire):
    """Runs last in this module: no INTERNAL or UNKNOWN answered by the handlers of either transport."""
    running, client, http = wire
    for transport in ("grpc", "http"):
        for rpc in ("Predict", "ClassifyZeroShot", "PredictStream"):
            for code in ("INTERNAL", "UNKNOWN"):
                labels = {"rpc": rpc, "code": code, "transport": transport}
                assert sample(running.metrics, "senti_requests_total", labels) == 0, labels
    assert http.get("/readyz").status_code == 200 and client.health() == "SERVING"
