"""Admission by time: a call is refused at once only when its work could not start within the bound or its deadline."""
import threading

import grpc
import httpx
import numpy as np
import pytest

from senti.client import RetryPolicy, SentiClient
from senti.model.batcher import Batcher, TokenCost
from senti.model.engine import Engine
from senti.model.types import Encoded
from tests.reliability.conftest import sample, serving

WAIT = 30


class GatedRunner:
    """A runner that holds each batch at a gate until the test opens it."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered = threading.Event()

    def run(self, items):
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return np.zeros((len(items), 2), np.float32)


def encoded(length: int) -> Encoded:
    return Encoded(ids=np.ones(length, np.int64), type_ids=np.zeros(length, np.int64), truncated=False)


def test_the_estimate_is_queued_tokens_at_the_measured_cost():
    runner = GatedRunner()
    batcher = Batcher([runner], max_batch_size=1)
    futures = []
    try:
        assert batcher.estimated_wait_s() == 0.0  # nothing measured yet: nothing is refused on a guess
        runner.gate.set()
        batcher.submit(encoded(10)).result(WAIT)  # one measured batch
        runner.gate.clear()
        runner.entered.clear()
        futures.append(batcher.submit(encoded(10)))
        assert runner.entered.wait(WAIT)  # the worker holds that one: the queue is exactly what comes next
        futures += [batcher.submit(encoded(10)) for _ in range(3)]
        three = batcher.estimated_wait_s()
        futures += [batcher.submit(encoded(30)) for _ in range(3)]
        assert three > 0 and batcher.queue_depth == 6
        # 120 tokens queued, not 30, and half of the 10 running ahead of either
        assert batcher.estimated_wait_s() == pytest.approx(three * 125 / 35, rel=1e-9)
    finally:
        runner.gate.set()
        for future in futures:
            future.result(WAIT)
        batcher.close(WAIT)


class ClockedRunner(GatedRunner):
    """A gated runner whose batches take 10 ms plus 1 ms per padded token on a fake clock."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def run(self, items):
        out = super().run(items)
        self.clock.now += 0.010 + 0.001 * len(items) * max(len(item.ids) for item in items)
        return out


def test_the_cost_per_token_weighs_batches_by_their_tokens(monkeypatch):
    """A lone short item costs more per token (its fixed cost is spread over few tokens); a long queue goes
    out in full batches, so the estimate must follow what those cost, not the mean of per-batch ratios."""
    import types

    from senti.model import batcher as batcher_module
    clock = types.SimpleNamespace(now=0.0)
    clock.monotonic = lambda: clock.now
    monkeypatch.setattr(batcher_module, "time", clock)
    runner = ClockedRunner(clock)
    batcher = Batcher([runner])
    try:
        runner.gate.set()
        batcher.submit(encoded(10)).result(WAIT)  # 20 ms for 10 tokens
        runner.gate.clear()
        runner.entered.clear()
        blocker = batcher.submit(encoded(10))  # 20 ms for 10 tokens, holding the worker while the rest queue
        assert runner.entered.wait(WAIT)
        full = [batcher.submit(encoded(100)) for _ in range(10)]
        runner.gate.set()
        for future in [blocker, *full]:
            assert future.result(WAIT).batch_size in (1, 10)
        assert full[0].result(WAIT).batch_size == 10  # 1,010 ms for 1,000 tokens
        # token-weighted: about 1.03 ms per token; the mean of the three ratios (2, 2, 1.01 ms) would say ~1.9
        assert 1.0 < batcher.estimated_wait_s(tokens_ahead=1000) < 1.1
    finally:
        runner.gate.set()
        batcher.close(WAIT)


def test_the_cost_is_per_queued_token_so_padding_counts(monkeypatch):
    """The queue holds real tokens and runs them padded: the cost per token it is estimated at must include
    the padding, or a queue of mixed lengths waits longer than admission promised."""
    import types

    from senti.model import batcher as batcher_module
    clock = types.SimpleNamespace(now=0.0)
    clock.monotonic = lambda: clock.now
    monkeypatch.setattr(batcher_module, "time", clock)
    runner = ClockedRunner(clock)
    batcher = Batcher([runner], overhead_tokens=10_000)  # one batch for every length
    try:
        blocker = batcher.submit(encoded(10))  # 20 ms for 10 tokens, holding the worker while the rest queue
        assert runner.entered.wait(WAIT)
        mixed = [batcher.submit(encoded(n)) for n in (60, 100)]  # 160 real tokens, run as 200 padded: 210 ms
        runner.gate.set()
        assert [f.result(WAIT).batch_size for f in [blocker, *mixed]] == [1, 2, 2]
        # the mixed batch holds most of the measured tokens: 160 queued tokens cost what it took, padding in
        assert batcher.estimated_wait_s(tokens_ahead=160) == pytest.approx(0.210, rel=1e-6)
    finally:
        runner.gate.set()
        batcher.close(WAIT)


def test_one_stalled_batch_does_not_inflate_the_estimate_and_a_lasting_slowdown_does():
    """A batch the machine stalled (a neighbour's burst) must not multiply the estimate for the backlog the stall
    queued, which then drains at the usual speed; when every batch is slower, the estimate follows."""
    cost = TokenCost(window=16)
    for _ in range(15):
        cost.add(0.010, 10)  # 1 ms per token
    cost.add(1.0, 10)  # stalled: 100 ms per token
    assert cost.per_token == pytest.approx(0.001)
    for _ in range(7):
        cost.add(0.030, 10)  # 3 ms per token from now on: half the window is not yet slower
    assert cost.per_token == pytest.approx(0.001)
    cost.add(0.030, 10)
    assert cost.per_token == pytest.approx(0.003)  # most of the window's tokens are


def test_the_estimate_weighs_batches_by_their_tokens():
    """Many lone short items at a high cost per token do not outweigh one full batch with more tokens."""
    cost = TokenCost()
    assert cost.per_token == 0.0  # nothing measured: nothing is refused on a guess
    for _ in range(10):
        cost.add(0.020, 10)  # 2 ms per token, 100 tokens in all
    cost.add(1.010, 1000)
    assert cost.per_token == pytest.approx(0.00101)


@pytest.fixture()
def queue_estimate(monkeypatch):
    """Sets what the engine estimates new work would wait (the estimate itself is tested above)."""
    value = {"s": 0.0}
    monkeypatch.setattr(Engine, "estimated_wait_s", lambda self, tokens_ahead=0: value["s"])
    return value


def test_calls_are_refused_only_past_the_bound_and_streams_and_health_stay_answered(tiny_bundle, queue_estimate):
    with serving(tiny_bundle, http_port=0, max_queue_wait_ms=1000) as (running, _), \
            SentiClient(f"127.0.0.1:{running.port}", timeout=30, retry=RetryPolicy(max_attempts=1)) as client:
        queue_estimate["s"] = 0.9  # under the bound: admitted
        assert client.predict("很好")
        queue_estimate["s"] = 2.5
        with pytest.raises(grpc.RpcError) as err:
            client.predict("很好", timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "about 2500 ms, past max_queue_wait_ms (1000 ms)" in err.value.details()
        trailing = dict(err.value.trailing_metadata())
        assert 1400 <= int(trailing["retry-after-ms"]) <= 1600
        with pytest.raises(grpc.RpcError) as err:
            client.classify_zero_shot("新闻", ["体育", "财经"])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # streams, model info and health are never refused by the estimate
        assert all(r.ok for r in client.stream([("1", "很好"), ("2", "很差")]))
        assert client.info().models and client.health() == "SERVING"
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            refused = http.post("/v1/predict", json={"texts": ["很好"]})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 2
            assert http.get("/readyz").status_code == 200
        assert sample(running.metrics, "senti_rejected_total", {"reason": "queue_wait"}) == 3


def test_a_refusal_at_the_door_reads_no_request_and_takes_no_worker(tiny_bundle, queue_estimate, monkeypatch):
    from senti.server.policy import Policy
    finished = []
    finish = Policy.finish

    def recording_finish(self, call):
        finished.append((call.rpc, call.code, threading.current_thread().name))
        finish(self, call)
    monkeypatch.setattr(Policy, "finish", recording_finish)
    with serving(tiny_bundle, max_queue_wait_ms=1000) as (running, _), \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        raw_predict = channel.unary_unary("/senti.v1.SentiService/Predict")  # bytes in, bytes out
        not_protobuf = b"\xff\xff\xff"
        with pytest.raises(grpc.RpcError) as err:
            raw_predict(not_protobuf, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # admitted: a worker parsed it
        queue_estimate["s"] = 2.5
        with pytest.raises(grpc.RpcError) as err:
            raw_predict(not_protobuf, timeout=30)
        # Refused before the body was read (else INVALID_ARGUMENT), with its hint and request id.
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing = dict(err.value.trailing_metadata())
        assert int(trailing["retry-after-ms"]) >= 1400 and trailing["x-request-id"]
    (_, admitted_code, admitted_thread), (_, refused_code, refused_thread) = finished
    assert admitted_code == grpc.StatusCode.INVALID_ARGUMENT and admitted_thread.startswith("senti-rpc")
    assert refused_code == grpc.StatusCode.RESOURCE_EXHAUSTED and not refused_thread.startswith("senti-rpc")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_throttled_client_sheds_what_the_server_would_refuse_and_recovers(tiny_bundle, queue_estimate):
    import asyncio
    import random

    from senti.client import AdaptiveThrottle, AsyncSentiClient
    clock = FakeClock()
    throttle = AdaptiveThrottle(window_s=30, clock=clock, rng=random.Random(0).random)
    with serving(tiny_bundle, max_queue_wait_ms=1000) as (running, _), \
            SentiClient(f"127.0.0.1:{running.port}", retry=RetryPolicy(max_attempts=1), throttle=throttle) as client:
        assert client.predict("很好")
        queue_estimate["s"] = 2.5
        outcomes = {"server": 0, "local": 0}
        for _ in range(200):
            with pytest.raises(grpc.RpcError) as err:
                client.predict("很好")
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            outcomes["local" if err.value.details().startswith("not sent") else "server"] += 1
        # The server saw only the calls the throttle let through; the rest were shed in the client.
        assert sample(running.metrics, "senti_rejected_total", {"reason": "queue_wait"}) == outcomes["server"]
        assert outcomes["local"] >= 150 and outcomes["server"] >= 2
        queue_estimate["s"] = 0.0
        clock.now += 31  # the overload has left the throttle's window
        assert all(client.predict("很好") for _ in range(20))

        async def shed_by_the_asyncio_client():
            always = AdaptiveThrottle(rng=lambda: 0.0)  # sheds whenever the probability is above 0
            async with AsyncSentiClient(f"127.0.0.1:{running.port}", retry=RetryPolicy(max_attempts=1),
                                        throttle=always) as aclient:
                queue_estimate["s"] = 2.5
                codes = []
                for _ in range(2):
                    try:
                        await aclient.predict("很好")
                    except grpc.aio.AioRpcError as error:
                        codes.append((error.code(), error.details().startswith("not sent")))
                return codes
        before = sample(running.metrics, "senti_rejected_total", {"reason": "queue_wait"})
        assert asyncio.run(shed_by_the_asyncio_client()) == [(grpc.StatusCode.RESOURCE_EXHAUSTED, False),
                                                              (grpc.StatusCode.RESOURCE_EXHAUSTED, True)]
        assert sample(running.metrics, "senti_rejected_total", {"reason": "queue_wait"}) == before + 1


def test_a_deadline_shorter_than_the_wait_is_refused_at_once(tiny_bundle, queue_estimate):
    with serving(tiny_bundle, http_port=0, max_queue_wait_ms=0) as (running, _), \
            SentiClient(f"127.0.0.1:{running.port}", retry=RetryPolicy(max_attempts=1)) as client:  # deadlines only
        queue_estimate["s"] = 2.0
        assert client.predict("很好", timeout=30)  # no bound but its own deadline, which the wait fits
        with pytest.raises(grpc.RpcError) as err:
            client.predict("很好", timeout=1.0)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "past its deadline" in err.value.details()
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            late = http.post("/v1/predict", json={"texts": ["很好"]}, headers={"grpc-timeout": "1S"})
            assert late.status_code == 429 and "past its deadline" in late.json()["message"]
            assert http.post("/v1/predict", json={"texts": ["很好"]}).status_code == 200


def test_work_admitted_ahead_counts_until_its_call_ends():
    from senti.server.metrics import Metrics
    from senti.server.policy import Policy, Refusal
    from senti.v1 import senti_pb2 as pb
    policy = Policy(Metrics(), queue_wait=lambda tokens_ahead: tokens_ahead * 0.001, max_queue_wait_s=0.1)
    request = pb.PredictRequest(texts=["好" * 48])  # 48 characters + 2: 50 tokens of work
    calls = [policy.begin("Predict", "grpc", (), "test") for _ in range(4)]
    for call in calls[:3]:  # 0, 50 and 100 tokens ahead: waits of 0, 50 and 100 ms fit the 100 ms bound
        policy.admit_work(call, request, remaining_s=None)
    with pytest.raises(Refusal) as refused:
        policy.admit_work(calls[3], request, remaining_s=None)  # 150 ahead: 150 ms
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refused.value.retry_after_ms == 50
    policy.finish(calls[0])  # a call ends: its work is no longer ahead of anyone
    policy.admit_work(calls[3], request, remaining_s=None)
    with pytest.raises(Refusal):
        policy.admit_work(policy.begin("Predict", "grpc", (), "test"), request, remaining_s=0.05)  # deadline
    info = policy.begin("GetModelInfo", "grpc", (), "test")
    policy.admit_work(info, pb.PredictRequest(texts=["好" * 10000]), remaining_s=0.0)  # never refused by time
