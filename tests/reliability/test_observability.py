"""Metrics, JSON logs with request ids, and tracing, against a real server over a real channel."""
import json
import logging
import urllib.request

import grpc
import pytest

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc
from senti.server.policy import clean_request_id
from senti.server.logs import JsonFormatter
from tests.reliability.conftest import sample, serving


def test_metrics_count_requests_phases_batches_cache_and_streams(metered):
    running, client = metered
    m = running.metrics
    before_ok = sample(m, "senti_requests_total", {"rpc": "Predict", "code": "OK", "transport": "grpc"})
    client.predict(["指标测试一", "指标测试二"])
    client.predict(["指标测试一"])  # a cache hit
    with pytest.raises(grpc.RpcError):
        client.predict([""])
    assert list(client.stream(iter([("x", "流"), ("y", " ")])))
    assert sample(m, "senti_requests_total", {"rpc": "Predict", "code": "OK", "transport": "grpc"}) == before_ok + 2
    assert sample(m, "senti_requests_total", {"rpc": "Predict", "code": "INVALID_ARGUMENT", "transport": "grpc"}) >= 1
    assert sample(m, "senti_stream_items_total", {"code": "OK"}) >= 1
    assert sample(m, "senti_stream_items_total", {"code": "INVALID_ARGUMENT"}) >= 1
    for phase in ("tokenize", "queue", "inference", "total"):
        assert sample(m, "senti_phase_duration_seconds_count", {"rpc": "Predict", "phase": phase}) >= 1
    assert sample(m, "senti_request_duration_seconds_count", {"rpc": "Predict", "transport": "grpc"}) >= 3
    assert sample(m, "senti_batch_size_count") >= 1 and sample(m, "senti_batch_size_sum") >= 2
    name = running.engine.models[0].bundle.name
    assert sample(m, "senti_cache_hits_total", {"model": name}) >= 1
    assert sample(m, "senti_cache_misses_total", {"model": name}) >= 2
    assert sample(m, "senti_in_flight_streams") == 0
    assert sample(m, "senti_queue_depth") == 0 and sample(m, "senti_ready") == 1


def test_metrics_endpoint_serves_prometheus_text(metered):
    running, client = metered
    port = running.serve_metrics("127.0.0.1", 0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "senti_requests_total" in body and "senti_model_info{" in body and "senti_skipped_items_total" in body
    assert 'execution_mode="batched"' in body


def test_access_log_is_json_with_the_callers_request_id(metered, caplog):
    running, client = metered
    caplog.set_level(logging.INFO, logger="senti.access")
    stub = senti_pb2_grpc.SentiServiceStub(client._channel)
    _, call = stub.Predict.with_call(pb.PredictRequest(texts=["日志测试"]), metadata=(("x-request-id", "req-42"),),
                                     timeout=30)
    assert dict(call.trailing_metadata())["x-request-id"] == "req-42"
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(pb.PredictRequest(texts=[" "]), timeout=30)
    generated = dict(err.value.trailing_metadata())["x-request-id"]
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "senti.access"]
    mine = next(line for line in lines if line.get("request_id") == "req-42")
    assert mine["rpc"] == "Predict" and mine["code"] == "OK" and mine["latency_ms"] > 0
    assert mine["level"] == "INFO" and mine["msg"] == "rpc finished"
    failed = next(line for line in lines if line.get("request_id") == generated)
    assert failed["code"] == "INVALID_ARGUMENT"


def test_request_ids_are_sanitised():
    assert clean_request_id("abc-123") == "abc-123"
    assert clean_request_id('evil"\n{injected}') == "evilinjected"
    assert len(clean_request_id("x" * 500)) == 64
    assert len(clean_request_id(None)) == 32 and len(clean_request_id("\n\n")) == 32


def test_json_formatter_keeps_exceptions_and_extras():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("senti", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
        import sys
        record.exc_info = sys.exc_info()
    record.rpc = "Predict"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "failed here" and line["rpc"] == "Predict" and "RuntimeError: boom" in line["exception"]


def test_tracing_records_a_server_span_with_the_status_and_the_callers_trace(tiny_bundle):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with serving(tiny_bundle, tracer_provider=provider) as (running, client):
        stub = senti_pb2_grpc.SentiServiceStub(client._channel)
        stub.Predict(pb.PredictRequest(texts=["追踪"]), timeout=30,
                     metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),))
        with pytest.raises(grpc.RpcError):
            stub.Predict(pb.PredictRequest(texts=[]), timeout=30)
    spans = [s for s in exporter.get_finished_spans() if s.name.endswith("/Predict")]
    assert len(spans) == 2
    ok, bad = spans
    assert format(ok.context.trace_id, "032x") == trace_id
    assert ok.attributes["rpc.grpc.status_code"] == 0
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
