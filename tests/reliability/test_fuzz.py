"""Hypothesis fuzzing of every RPC over a real channel: random unicode, invalid UTF-8 and lone surrogates sent as
raw bytes, huge and empty fields, many labels. Zero crashes: every answer is OK or a documented status, and the
server stays SERVING."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc
from tests.reliability.conftest import sample

# The statuses the .proto documents for a request the caller got wrong; nothing else may come back.
DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

chars = st.characters(blacklist_categories=("Cs",))  # lone surrogates cannot be encoded here: see raw tests
text = st.one_of(st.text(chars, max_size=40), st.text(chars, min_size=1900, max_size=2100),
                 st.sampled_from(["", " ", "\n\t", "\x00", "好" * 2001, "😀" * 50, "\u202e\u200b"]))
texts = st.lists(text, max_size=10)
labels = st.lists(st.text(chars, max_size=8), max_size=8)
template = st.one_of(st.just(""), st.text(chars, max_size=12), st.text(chars, max_size=6).map(lambda t: t + "{}"))


def call(fn, request):
    """Status code of one call; the server must answer (no hang: 30 s deadline)."""
    try:
        fn(request, timeout=30)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


@pytest.fixture(scope="module")
def channel(metered):
    """One channel to the module's server for every example."""
    running, _ = metered
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield channel


def stub(channel):
    return senti_pb2_grpc.SentiServiceStub(channel)


@FUZZ
@given(texts=texts, strict=st.booleans())
def test_fuzz_predict(channel, texts, strict):
    assert call(stub(channel).Predict, pb.PredictRequest(texts=texts, strict=strict)) in DOCUMENTED


@FUZZ
@given(texts=texts, labels=labels, template=template, multi_label=st.booleans(), strict=st.booleans())
def test_fuzz_classify_zero_shot(channel, texts, labels, template, multi_label, strict):
    request = pb.ClassifyZeroShotRequest(texts=texts, labels=labels, hypothesis_template=template,
                                         multi_label=multi_label, strict=strict)
    assert call(stub(channel).ClassifyZeroShot, request) in DOCUMENTED


@FUZZ
@given(items=st.lists(st.tuples(st.text(chars, max_size=6), text, st.booleans()), max_size=12))
def test_fuzz_predict_stream(channel, items):
    requests = [pb.PredictStreamRequest(id=i, text=t, strict=s) for i, t, s in items]
    responses = list(stub(channel).PredictStream(iter(requests), timeout=60))
    assert sorted(r.id for r in responses) == sorted(i for i, _, _ in items)
    for response in responses:
        if response.HasField("error"):
            assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == response.error.code


# -- raw bytes: what a client in another language can send --------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string_field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


# UTF-8 encodings of lone surrogates (U+D800..U+DFFF), which no valid UTF-8 string contains.
lone_surrogate = st.integers(0xD800, 0xDFFF).map(lambda c: chr(c).encode("utf-8", "surrogatepass"))
bad_utf8 = st.one_of(lone_surrogate, st.binary(min_size=1, max_size=20),
                     st.builds(lambda a, s, b: a.encode() + s + b.encode(), st.text(max_size=5), lone_surrogate,
                               st.text(max_size=5)))


def raw(channel, method: str):
    return channel.unary_unary(f"/senti.v1.SentiService/{method}", request_serializer=None,
                               response_deserializer=None, _registered_method=False)


@FUZZ
@given(payload=bad_utf8, field=st.sampled_from([1]))
def test_raw_bad_utf8_in_predict_is_invalid_argument_or_ok(channel, payload, field):
    code = call(raw(channel, "Predict"), string_field(field, payload))
    assert code in DOCUMENTED
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        assert code == grpc.StatusCode.INVALID_ARGUMENT


@FUZZ
@given(payload=bad_utf8, field=st.sampled_from([1, 2, 3]))
def test_raw_bad_utf8_in_zero_shot_is_documented(channel, payload, field):
    body = string_field(1, "一条新闻".encode()) + string_field(2, "体育".encode()) + string_field(field, payload)
    assert call(raw(channel, "ClassifyZeroShot"), body) in DOCUMENTED


@FUZZ
@given(garbage=st.binary(max_size=64))
def test_raw_garbage_bytes_are_documented(channel, garbage):
    for method in ("Predict", "ClassifyZeroShot", "GetModelInfo"):
        assert call(raw(channel, method), garbage) in DOCUMENTED


def test_lone_surrogate_in_a_stream_ends_it_invalid_argument_after_answering_earlier_items(channel):
    method = channel.stream_stream("/senti.v1.SentiService/PredictStream", request_serializer=None,
                                   response_deserializer=pb.PredictStreamResponse.FromString,
                                   _registered_method=False)
    good = string_field(1, b"a") + string_field(2, "很好".encode())
    bad = string_field(1, b"b") + string_field(2, b"\xed\xa0\x80")
    answered = []
    with pytest.raises(grpc.RpcError) as err:
        for response in method(iter([good, bad]), timeout=30):
            answered.append(response.id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in err.value.details()
    assert answered == ["a"]


def test_huge_and_many_fields(channel):
    huge = pb.PredictRequest(texts=["好" * 2_000_000])  # 6 MB: over the 4 MiB message limit
    assert call(stub(channel).Predict, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
    many_labels = pb.ClassifyZeroShotRequest(texts=["新闻"], labels=[f"标签{i}" for i in range(10_000)])
    assert call(stub(channel).ClassifyZeroShot, many_labels) == grpc.StatusCode.INVALID_ARGUMENT
    many_texts = pb.PredictRequest(texts=["好"] * 100_000)
    assert call(stub(channel).Predict, many_texts) == grpc.StatusCode.INVALID_ARGUMENT
    long_label = pb.ClassifyZeroShotRequest(texts=["新闻"], labels=["长" * 100_000])
    assert call(stub(channel).ClassifyZeroShot, long_label) == grpc.StatusCode.INVALID_ARGUMENT
    assert call(stub(channel).Predict, pb.PredictRequest()) == grpc.StatusCode.INVALID_ARGUMENT


def test_after_fuzzing_the_server_is_serving_and_never_failed(metered, channel):
    """Runs last in this module (pytest keeps file order): no INTERNAL or UNKNOWN was ever answered."""
    running, client = metered
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    for rpc in ("Predict", "ClassifyZeroShot", "PredictStream", "GetModelInfo"):
        for code in ("INTERNAL", "UNKNOWN"):
            assert sample(running.metrics, "senti_requests_total", {"rpc": rpc, "code": code, "transport": "grpc"}) == 0
    assert sample(running.metrics, "senti_requests_total", {"rpc": "Predict", "code": "INVALID_ARGUMENT", "transport": "grpc"}) > 0
    assert client.predict("服务很好")[0].label in ("negative", "positive")
