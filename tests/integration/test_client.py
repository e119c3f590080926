"""The SDK's sync and asyncio clients against real servers: typed results, round_robin over replicas, retries."""
import asyncio

import grpc
import pytest

from senti.client import AsyncSentiClient, RetryPolicy, SentiClient
from tests.conftest import running_server

TEXTS = ["很好", "很差", "物流很快"]
LABELS = ["好评", "差评"]
NO_RETRY = RetryPolicy(max_attempts=1)


def requests_served(running, code: str = "OK", rpc: str = "Predict") -> float:
    """What the server's own metrics counted for one RPC and status code."""
    value = running.metrics.registry.get_sample_value("senti_requests_total", {"rpc": rpc, "code": code, "transport": "grpc"})
    return value or 0.0


def refused(running, reason: str) -> float:
    """Calls the server refused with RESOURCE_EXHAUSTED, by reason."""
    return running.metrics.registry.get_sample_value("senti_rejected_total", {"reason": reason}) or 0.0


def test_async_client_returns_what_the_sync_client_returns(tiny_server):
    running, sync = tiny_server
    target = f"127.0.0.1:{running.port}"
    examples = {"好评": ["非常满意", "好评"], "差评": ["很差"]}
    expected = (sync.predict(TEXTS), sync.classify_zero_shot(TEXTS, LABELS),
                sync.classify_zero_shot(TEXTS, LABELS, examples=examples),
                sorted(sync.stream((str(i), t) for i, t in enumerate(TEXTS)),
                       key=lambda r: r.id), sync.info(), sync.health())

    async def calls():
        async with AsyncSentiClient(target, timeout=30) as client:
            async def items():
                for i, text in enumerate(TEXTS):
                    yield str(i), text
            streamed = [r async for r in client.stream(items())]
            return (await client.predict(TEXTS), await client.classify_zero_shot(TEXTS, LABELS),
                    await client.classify_zero_shot(TEXTS, LABELS, examples=examples),
                    sorted(streamed, key=lambda r: r.id), await client.info(), await client.health())

    got = asyncio.run(calls())
    assert got == expected
    assert got[2] != got[1]  # the examples made a difference
    assert [r.id for r in got[3]] == ["0", "1", "2"] and all(r.ok for r in got[3])
    assert got[5] == "SERVING"


def test_async_client_raises_the_servers_status(tiny_server):
    running, _ = tiny_server

    async def call():
        async with AsyncSentiClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            await client.predict([""])

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(call())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0] is empty" in err.value.details()


@pytest.fixture(scope="module")
def two_replicas(tiny_bundle):
    """Two real servers on port 0 over the same tiny bundle."""
    with running_server(tiny_bundle) as (first, _), running_server(tiny_bundle) as (second, _):
        yield first, second


def test_sync_client_spreads_calls_over_a_list_of_replicas(two_replicas):
    before = [requests_served(r) for r in two_replicas]
    with SentiClient([f"127.0.0.1:{r.port}" for r in two_replicas], timeout=30) as client:
        for _ in range(20):
            client.predict("很好")
    served = [requests_served(r) - b for r, b in zip(two_replicas, before)]
    assert sum(served) == 20
    assert min(served) >= 5, f"round_robin should alternate; served {served}"


def test_async_client_spreads_calls_over_a_list_of_replicas(two_replicas):
    before = [requests_served(r) for r in two_replicas]

    async def calls():
        async with AsyncSentiClient([f"localhost:{r.port}" for r in two_replicas], timeout=30) as client:
            for _ in range(20):
                await client.predict("很好")

    asyncio.run(calls())
    served = [requests_served(r) - b for r, b in zip(two_replicas, before)]
    assert sum(served) == 20 and min(served) >= 5, served


@pytest.mark.parametrize("attempts", [1, 3])
def test_unavailable_is_retried_by_the_service_config_policy(tiny_bundle, attempts):
    # A server that is not warmed up answers UNAVAILABLE: each attempt reaches it and is counted.
    with running_server(tiny_bundle, warm=False) as (running, _):
        policy = RetryPolicy(max_attempts=attempts, initial_backoff_s=0.01, max_backoff_s=0.05)
        with SentiClient(f"127.0.0.1:{running.port}", timeout=30, retry=policy) as client:
            with pytest.raises(grpc.RpcError) as err:
                client.predict("很好")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert requests_served(running, "UNAVAILABLE") == attempts


@pytest.fixture()
def rate_limited(tiny_bundle):
    """A server that lets each client make one call per second (burst 1): a quick second call is refused."""
    with running_server(tiny_bundle, rate_limit_rps=1.0, rate_limit_burst=1) as (running, _):
        yield running


def test_resource_exhausted_is_retried_after_the_servers_hint(rate_limited):
    with SentiClient(f"127.0.0.1:{rate_limited.port}", timeout=30) as client:
        results = [client.predict("很好")[0] for _ in range(3)]
    assert len(results) == 3
    assert refused(rate_limited, "rate_limit") >= 2  # two calls were refused first, then answered on retry
    assert requests_served(rate_limited) == 3


def test_async_resource_exhausted_is_retried_after_the_servers_hint(rate_limited):
    async def calls():
        async with AsyncSentiClient(f"127.0.0.1:{rate_limited.port}", timeout=30) as client:
            return [(await client.predict("很好"))[0] for _ in range(2)]

    assert len(asyncio.run(calls())) == 2
    assert refused(rate_limited, "rate_limit") >= 1 and requests_served(rate_limited) == 2


@pytest.mark.parametrize("policy, timeout", [
    (NO_RETRY, 30),                                  # retries off
    (RetryPolicy(max_retry_after_s=0.01), 30),       # the server's hint (about 1 s) is longer than allowed
    (RetryPolicy(), 0.5),                            # the hint does not fit in the call's deadline
])
def test_resource_exhausted_retries_are_bounded(rate_limited, policy, timeout):
    with SentiClient(f"127.0.0.1:{rate_limited.port}", timeout=timeout, retry=policy) as client:
        client.predict("很好")
        with pytest.raises(grpc.RpcError) as err:
            client.predict("很好")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit" in err.value.details()
    assert refused(rate_limited, "rate_limit") == 1  # refused once, never retried
