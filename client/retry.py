"""Client interceptors that retry unary calls the server refused with RESOURCE_EXHAUSTED, after its hint, and
(given an AdaptiveThrottle) shed calls locally while the server refuses most of them."""
import asyncio
import collections
import time

import grpc

from .channel import RetryPolicy
from .throttle import AdaptiveThrottle, LocalRefusal


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    """The sync API's ClientCallDetails is abstract: a concrete one, to shorten the timeout of a retry."""


def _remaining(timeout: float | None, started: float) -> float | None:
    return None if timeout is None else timeout - (time.monotonic() - started)


class ResourceExhaustedRetry(grpc.UnaryUnaryClientInterceptor):
    """Retries a refused unary call as the RetryPolicy says, within the call's own deadline; each attempt asks
    the throttle (when there is one) first."""

    def __init__(self, policy: RetryPolicy, throttle: AdaptiveThrottle | None = None):
        self.policy = policy
        self.throttle = throttle

    def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.monotonic()
        retry = 1
        while True:
            if self.throttle is not None and not self.throttle.allow():
                return LocalRefusal(self.throttle.details())
            outcome = continuation(client_call_details, request)
            if outcome.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                if self.throttle is not None:
                    self.throttle.accepted()
                return outcome
            delay = self.policy.resource_exhausted_delay(retry, outcome.trailing_metadata(),
                                                         _remaining(client_call_details.timeout, started))
            if delay is None:
                return outcome
            time.sleep(delay)
            remaining = _remaining(client_call_details.timeout, started)
            client_call_details = _CallDetails(
                client_call_details.method, remaining, client_call_details.metadata, client_call_details.credentials,
                client_call_details.wait_for_ready, getattr(client_call_details, "compression", None))
            retry += 1


class AsyncResourceExhaustedRetry(grpc.aio.UnaryUnaryClientInterceptor):
    """The asyncio twin of ResourceExhaustedRetry."""

    def __init__(self, policy: RetryPolicy, throttle: AdaptiveThrottle | None = None):
        self.policy = policy
        self.throttle = throttle

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.monotonic()
        retry = 1
        while True:
            if self.throttle is not None and not self.throttle.allow():
                raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                           grpc.aio.Metadata(), details=self.throttle.details())
            call = await continuation(client_call_details, request)
            if await call.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                if self.throttle is not None:
                    self.throttle.accepted()
                return call
            delay = self.policy.resource_exhausted_delay(retry, await call.trailing_metadata(),
                                                         _remaining(client_call_details.timeout, started))
            if delay is None:
                return call
            await asyncio.sleep(delay)
            client_call_details = client_call_details._replace(
                timeout=_remaining(client_call_details.timeout, started))
            retry += 1
