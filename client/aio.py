"""AsyncSentiClient: the asyncio (grpc.aio) twin of SentiClient, with the same typed results."""
import asyncio
import random
import time
from typing import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from .channel import RetryPolicy, channel_options, channel_target
from .results import (Prediction, StreamResult, ZeroShotResult, predict_request, stream_request,
                      zero_shot_request)
from .resume import Attempt, Pending, can_resume
from .retry import AsyncResourceExhaustedRetry
from .throttle import AdaptiveThrottle


class AsyncSentiClient:
    """An asyncio channel to senti with the same calls, targets, RetryPolicy and throttle as SentiClient.

    Create it inside a running event loop; use `async with` or `await client.close()`.
    """

    def __init__(self, target: str | Sequence[str] = "localhost:50051", *, timeout: float | None = 10.0,
                 wait_for_ready: bool = True, metadata: Sequence[tuple[str, str]] = (),
                 retry: RetryPolicy = RetryPolicy(), credentials: grpc.ChannelCredentials | None = None,
                 throttle: AdaptiveThrottle | None = None):
        address, options = channel_target(target), channel_options(retry)
        interceptors = [AsyncResourceExhaustedRetry(retry, throttle)]
        self._channel = (grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
                         if credentials is not None
                         else grpc.aio.insecure_channel(address, options=options, interceptors=interceptors))
        self._stub = senti_pb2_grpc.SentiServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.metadata = tuple(metadata)
        self.retry = retry

    async def __aenter__(self) -> "AsyncSentiClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()

    def _call_options(self, timeout: float | None) -> dict:
        return {"timeout": self.timeout if timeout is None else timeout, "wait_for_ready": self.wait_for_ready,
                "metadata": self.metadata}

    async def predict(self, texts: str | Sequence[str], *, strict: bool = False,
                      timeout: float | None = None) -> list[Prediction]:
        """Sentiment of one text or many, in order; raises grpc.aio.AioRpcError with the server's status."""
        response = await self.predict_with_metadata(texts, strict=strict, timeout=timeout)
        return [Prediction.from_pb(p) for p in response.predictions]

    async def predict_with_metadata(self, texts: str | Sequence[str], *, strict: bool = False,
                                    timeout: float | None = None) -> pb.PredictResponse:
        """The raw PredictResponse, timing metadata included."""
        return await self._stub.Predict(predict_request(texts, strict), **self._call_options(timeout))

    async def classify_zero_shot(self, texts: str | Sequence[str], labels: Sequence[str] = (), *, template: str = "",
                                 multi_label: bool = False, strict: bool = False, timeout: float | None = None,
                                 examples: Mapping[str, Sequence[str]] | None = None,
                                 classifier: str = "") -> list[ZeroShotResult]:
        """Zero-shot classification of one text or many into the given labels.

        `examples` ({label: [texts]}, optional) makes it few-shot: each label given examples is scored against
        a prototype of its hypothesis and its examples (embedding bundles only; the server caches it, so
        sending the same examples again costs no model work). `classifier` names one registered on the server
        (its labels, template and examples; `info().classifiers` lists them) instead of labels and examples.
        """
        request = zero_shot_request(texts, labels, template, multi_label, strict, examples, classifier)
        response = await self._stub.ClassifyZeroShot(request, **self._call_options(timeout))
        return [ZeroShotResult.from_pb(r) for r in response.results]

    async def stream(self, items: Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]], *,
                     strict: bool = False, timeout: float | None = None,
                     max_reconnects: int = 5) -> AsyncIterator[StreamResult]:
        """Feeds (id, text) pairs (an iterable or an async iterable) through PredictStream; yields each result.

        The same contract as SentiClient.stream: every id answered once, possibly out of order, bad items get
        an error result and the stream goes on, a stream broken by UNAVAILABLE is reopened and its unanswered
        items resent; `timeout` (default: none) bounds the whole feed.
        """
        source, source_lock, pending = _aiter(items), asyncio.Lock(), Pending()
        deadline = None if timeout is None else time.monotonic() + timeout
        resend: list[tuple[str, str]] = []
        reconnects = 0
        while True:
            attempt = Attempt(pending, resend)

            async def requests(attempt=attempt):
                async for item_id, text in attempt.aitems(source, source_lock):
                    yield stream_request(item_id, text, strict)

            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                call = self._stub.PredictStream(requests(), **{**self._call_options(remaining), "timeout": remaining})
                async for response in call:
                    pending.answered(response.id)
                    reconnects = 0
                    yield StreamResult.from_pb(response)
                return
            except grpc.RpcError as error:
                if not can_resume(error, reconnects, max_reconnects):
                    raise
                reconnects += 1
                resend = attempt.end()
                await asyncio.sleep(self.retry.backoff_s(reconnects) * random.uniform(0.5, 1.0))
            finally:
                attempt.alive = False

    async def info(self, timeout: float | None = None) -> pb.GetModelInfoResponse:
        """Models, tasks and limits of the server."""
        return await self._stub.GetModelInfo(pb.GetModelInfoRequest(), **self._call_options(timeout))

    async def health(self, service: str = "", timeout: float | None = None) -> str:
        """The server's health status name: SERVING, NOT_SERVING, ..."""
        response = await self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                            timeout=self.timeout if timeout is None else timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def _aiter(items) -> AsyncIterator:
    """An async iterator over an iterable or an async iterable."""
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
