"""Overload, cancellation and deadlines against a real server whose model is held by a gate.

The gate (a patched `OnnxRunner.run` that waits for an event) makes "work is queued" a fact rather than a
race: each test waits on events (an item reached the batcher, a request was cancelled), never on sleeps.
"""
import threading
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from senti.model import futures as fx
from senti.model.batcher import Batcher
from senti.model.runtime import OnnxRunner
from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc
from tests.reliability.conftest import sample, serving

WAIT = 30  # seconds: only a bound on a wait for an event, never a timing assertion
LATE_DEADLINE = 3.0  # seconds: a deadline that expires in the queue, well after the handler queued its items


class Probe:
    """Holds the model at a gate and counts what reaches the batcher and what gets cancelled."""

    def __init__(self, monkeypatch):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.submitted = 0
        self.cancels = 0
        self._cond = threading.Condition()
        run, submit, cancel = OnnxRunner.run, Batcher.submit, fx.CancelToken.cancel
        probe = self

        def gated_run(runner, items):
            probe.entered.set()
            assert probe.gate.wait(WAIT), "the test never opened the gate"
            return run(runner, items)

        def counted_submit(batcher, *args, **kwargs):
            future = submit(batcher, *args, **kwargs)
            with probe._cond:
                probe.submitted += 1
                probe._cond.notify_all()
            return future

        def counted_cancel(token):
            cancel(token)
            with probe._cond:
                probe.cancels += 1
                probe._cond.notify_all()

        monkeypatch.setattr(OnnxRunner, "run", gated_run)
        monkeypatch.setattr(Batcher, "submit", counted_submit)
        monkeypatch.setattr(fx.CancelToken, "cancel", counted_cancel)

    def wait_for(self, predicate) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self), WAIT)


@contextmanager
def gated_server(tiny_bundle, monkeypatch, **overrides):
    """A warm server with one batch worker; the model is held from here on until probe.gate is set."""
    with serving(tiny_bundle, sessions=1, cache_size=0, **overrides) as (running, client):
        probe = Probe(monkeypatch)
        stub = senti_pb2_grpc.SentiServiceStub(client._channel)
        try:
            yield running, client, stub, probe
        finally:
            probe.gate.set()


def items_run(running) -> int:
    return sum(model.executor.stats.items for model in running.engine.models)


def hold_the_worker(stub, probe):
    """Starts a request that the only worker takes and holds at the gate; returns its future."""
    blocker = stub.Predict.future(pb.PredictRequest(texts=["先到的请求"]), timeout=WAIT)
    assert probe.entered.wait(WAIT)
    return blocker


def test_cancelled_rpc_frees_its_queued_work(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        before = items_run(running)
        queued = stub.Predict.future(pb.PredictRequest(texts=["甲", "乙乙", "丙丙丙"]), timeout=WAIT)
        probe.wait_for(lambda p: p.submitted >= 4)
        queued.cancel()
        probe.wait_for(lambda p: p.cancels >= 1)
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")  # FIFO: once this is answered, the worker has passed the cancelled items
        stats = running.engine.models[0].executor.stats
        assert stats.skipped_cancelled == 3
        assert items_run(running) - before == 2  # the blocker and the last request: nothing of the cancelled one
        assert sample(running.metrics, "senti_skipped_items_total",
                      {"model": running.engine.models[0].bundle.name, "reason": "cancelled"}) == 3


def test_cancelled_stream_frees_its_queued_work(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, max_stream_in_flight=8) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        before = items_run(running)
        requests = [pb.PredictStreamRequest(id=str(i), text=f"第{i}条评论") for i in range(3)]
        release = threading.Event()

        def feed():  # three items, then hold the stream open until the test cancels it
            yield from requests
            release.wait(WAIT)

        call = stub.PredictStream(feed(), timeout=WAIT)
        probe.wait_for(lambda p: p.submitted >= 4)
        call.cancel()
        probe.wait_for(lambda p: p.cancels >= 1)
        release.set()
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")
        assert running.engine.models[0].executor.stats.skipped_cancelled == 3
        assert items_run(running) - before == 2
        assert sample(running.metrics, "senti_in_flight_streams") == 0


def test_deadline_that_expires_in_the_queue_costs_no_inference(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        before = items_run(running)
        # The deadline only has to pass while the items are queued, and the gate holds them for up to WAIT; it
        # must not pass before the handler has queued them (a loaded machine can take far more than 0.3 s for
        # that), or the probe below would wait for submissions that never come.
        late = stub.Predict.future(pb.PredictRequest(texts=["等不及了", "真的等不及"]), timeout=LATE_DEADLINE)
        probe.wait_for(lambda p: p.submitted >= 3)
        with pytest.raises(grpc.RpcError) as err:
            late.result()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        probe.wait_for(lambda p: p.cancels >= 1)  # the server saw the call end
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")
        stats = running.engine.models[0].executor.stats
        assert stats.skipped_cancelled + stats.skipped_deadline == 2
        assert items_run(running) - before == 2


def test_overload_is_refused_at_once_with_a_hint_and_health_stays_serving(tiny_bundle, monkeypatch):
    limit = 4
    with gated_server(tiny_bundle, monkeypatch, max_concurrent_rpcs=limit, grpc_workers=8) as (
            running, client, stub, probe):
        accepted = [stub.Predict.future(pb.PredictRequest(texts=[f"请求{i}"]), timeout=WAIT) for i in range(limit)]
        probe.wait_for(lambda p: p.submitted >= limit)  # every admitted call is in the engine, held by the gate
        excess = [stub.Predict.future(pb.PredictRequest(texts=["多余的"]), timeout=WAIT) for _ in range(5 * limit)]
        # Answered while every accepted call is still held: the refusal does not wait for the model.
        for future in excess:
            error = future.exception()
            assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert int(dict(error.trailing_metadata())["retry-after-ms"]) >= 1
        assert not any(future.done() for future in accepted)
        health = health_pb2_grpc.HealthStub(client._channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        info = stub.GetModelInfo.future(pb.GetModelInfoRequest(), timeout=WAIT)
        assert info.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # SentiService calls all count
        probe.gate.set()
        assert all(len(future.result().predictions) == 1 for future in accepted)
        assert client.predict("恢复了")[0].label in ("negative", "positive")
        assert sample(running.metrics, "senti_rejected_total", {"reason": "concurrency"}) == 5 * limit + 1
        refused = {"rpc": "Predict", "code": "RESOURCE_EXHAUSTED", "transport": "grpc"}
        assert sample(running.metrics, "senti_requests_total", refused) == 5 * limit


def test_full_batch_queue_is_resource_exhausted(tiny_bundle, monkeypatch):
    with gated_server(tiny_bundle, monkeypatch, max_queue=4) as (running, client, stub, probe):
        blocker = hold_the_worker(stub, probe)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(pb.PredictRequest(texts=[f"文本{i}" for i in range(6)]), timeout=WAIT)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # at once, though the model is held
        probe.wait_for(lambda p: p.cancels >= 1)
        probe.gate.set()
        assert blocker.result().predictions
        assert client.predict("后来的请求")
        # The four texts that did fit in the queue were dropped with the failed request, not run.
        assert running.engine.models[0].executor.stats.skipped_cancelled == 4
