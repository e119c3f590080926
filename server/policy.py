"""The serving policy, written once for every transport: request id, admission, auth, rate limit, metrics, log.

gRPC's interceptor (interceptors.py) and the HTTP app (http/) call the same methods in the same order:
1. `begin`: the caller's `x-request-id` (sanitised) or a new one, carried by every log line of the call;
2. `overloaded` when admission refused the call (at most max_concurrent_rpcs SentiService calls at once,
   over both transports: a backstop for threads): RESOURCE_EXHAUSTED with a retry hint of a typical call time;
   gRPC also asks `door_refusal` before it reads the request, to refuse a call no bound could admit;
3. `admit`: bearer-token auth (health is exempt), then the per-client rate limit of unary calls (a stream pays
   one token per item instead, `item_wait`); then, once the request is read, `admit_work`: admission by time,
   which refuses a Predict or ClassifyZeroShot call at once only when the work already admitted ahead of it
   (at the engine's measured cost per token) would keep its own from starting within max_queue_wait_ms or
   before its deadline;
4. the handler; then `finish`: status code, latency and phase times to the metrics, one JSON access-log line.
A refusal is raised as `Refusal`, which each transport turns into its own status and retry header.
"""
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import grpc

from . import logs
from .admission import Admission
from .auth import Authenticator
from .metrics import Metrics
from .ratelimit import RateLimiter

log = logging.getLogger("senti.access")

REQUEST_ID_KEY = "x-request-id"
RETRY_AFTER_KEY = "retry-after-ms"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._:/=+-]")
TIMED = frozenset({"Predict", "ClassifyZeroShot"})


def clean_request_id(value: str | None) -> str:
    """The caller's request id made safe for logs (printable ASCII, at most 64 chars), or a new uuid4 hex."""
    if value:
        cleaned = _SAFE_ID.sub("", value)[:64]
        if cleaned:
            return cleaned
    return uuid.uuid4().hex


class Refusal(Exception):
    """The policy refused a call: a status code, a message a person can act on, and an optional retry hint."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_ms: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


@dataclass
class Call:
    """What the policy knows of one call while it runs."""

    rpc: str
    transport: str
    request_id: str
    started: float
    peer: str
    client: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    tokens: int = 0  # the work this call was admitted with (admission by time counts it until the call ends)
    log_token: object = None
    span: object = None


class Policy:
    """Admission, auth, rate limit, metrics and access log for calls of any transport."""

    def __init__(self, metrics: Metrics, *, admission: Admission | None = None,
                 authenticator: Authenticator | None = None, rate_limiter: RateLimiter | None = None, tracer=None,
                 queue_wait: Callable[[int], float] | None = None, max_queue_wait_s: float | None = None):
        self.metrics = metrics
        self.admission = admission
        self.queue_wait = queue_wait  # the engine's estimate of the wait, given the tokens admitted ahead
        self.max_queue_wait_s = max_queue_wait_s
        self._work_lock = threading.Lock()
        self._admitted_tokens = 0  # of admitted unary calls not yet finished, queued or not
        self.authenticator = authenticator if authenticator is not None and authenticator.enabled else None
        self.rate_limiter = rate_limiter
        self.tracer = tracer
        self._typical_s = 0.05  # moving average of unary SentiService latency: the retry hint when full

    def begin(self, rpc: str, transport: str, headers, peer: str) -> Call:
        """Starts a call: request id, log context, in-flight gauge and (when configured) a trace span."""
        headers = tuple(headers or ())
        call = Call(rpc, transport, clean_request_id(next((v for k, v in headers if k == REQUEST_ID_KEY), None)),
                    time.monotonic(), peer)
        call.log_token = logs.request_id.set(call.request_id)
        self.metrics.in_flight.labels(rpc, transport).inc()
        if self.tracer is not None:
            from .tracing import start_server_span
            call.span = start_server_span(self.tracer, rpc, headers, call.request_id)
        return call

    def overloaded(self) -> Refusal:
        """The refusal of a call beyond max_concurrent_rpcs, with a retry hint of a typical call time."""
        self.metrics.rejected.labels("concurrency").inc()
        retry_ms = max(1, math.ceil(self._typical_s * 1000))
        return Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"the server is at its limit of {self.admission.limit} concurrent requests; "
                       f"retry after {retry_ms} ms, or on another replica", retry_ms)

    def admit(self, call: Call, headers, *, exempt: bool, limited: bool, anonymous_client: str,
              rate_limit: bool = True) -> None:
        """Auth, then the rate limit of unary calls; raises Refusal when refused."""
        identity = None
        if self.authenticator is not None and not exempt:
            identity = self.authenticator.client(tuple(headers or ()))
            if identity is None:
                self.metrics.rejected.labels("unauthenticated").inc()
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED,
                              "missing or invalid bearer token; send 'authorization: Bearer <token>'")
        call.client = identity or anonymous_client
        if self.rate_limiter is not None and limited and rate_limit:
            wait = self.rate_limiter.take(call.client)
            if wait > 0:
                self.metrics.rejected.labels("rate_limit").inc()
                retry_ms = max(1, math.ceil(wait * 1000))
                raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"rate limit of {self.rate_limiter.rate:g} requests/s exceeded; "
                              f"retry after {retry_ms} ms", retry_ms)

    def admit_work(self, call: Call, request, remaining_s: float | None) -> None:
        """Admission by time for a Predict or ClassifyZeroShot request (`remaining_s`: what is left of the
        caller's deadline): refuses it (raises Refusal) when its work could not start within max_queue_wait_ms
        nor before its deadline; else counts its work as ahead of later calls until it finishes."""
        if call.rpc not in TIMED or self.queue_wait is None:
            return
        tokens = sum(len(text) + 2 for text in request.texts)  # characters as tokens: known before tokenising
        bounds = [b for b in (self.max_queue_wait_s, remaining_s) if b is not None]
        with self._work_lock:
            ahead = self._admitted_tokens
        wait = self.queue_wait(ahead)
        bound = min(bounds) if bounds else None
        if bound is None or wait <= bound:
            with self._work_lock:
                self._admitted_tokens += tokens
            call.tokens = tokens
            return
        which = "its deadline" if remaining_s is not None and bound == remaining_s else "max_queue_wait_ms"
        raise self._queue_refusal(wait, bound, which)

    def door_refusal(self, rpc: str) -> Refusal | None:
        """Admission by time before the request is read: the refusal of a Predict or ClassifyZeroShot call when
        the work already admitted would keep any call from starting within max_queue_wait_ms, else None.
        (Its own size and deadline could only make the wait longer or the bound shorter.)"""
        if rpc not in TIMED or self.queue_wait is None or self.max_queue_wait_s is None:
            return None
        wait = self.queue_wait(self._admitted_tokens)  # one int read: no lock needed for an estimate
        if wait <= self.max_queue_wait_s:
            return None
        return self._queue_refusal(wait, self.max_queue_wait_s, "max_queue_wait_ms")

    def _queue_refusal(self, wait: float, bound: float, which: str) -> Refusal:
        self.metrics.rejected.labels("queue_wait").inc()
        retry_ms = max(1, math.ceil((wait - bound) * 1000))
        return Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"the queue would hold this request about {wait * 1000:.0f} ms, past {which} "
                       f"({bound * 1000:.0f} ms); retry after {retry_ms} ms, or on another replica", retry_ms)

    def item_wait(self, call: Call) -> float:
        """Seconds a stream item must wait for the caller's rate (0 when it may go now, or no limit is set)."""
        return 0.0 if self.rate_limiter is None else self.rate_limiter.take(call.client)

    @property
    def limits_stream_items(self) -> bool:
        """True when stream items pay the rate limit."""
        return self.rate_limiter is not None

    def succeeded(self, call: Call, response) -> None:
        """A unary SentiService response: its phase times to the metrics, its latency to the retry hint."""
        if call.rpc in TIMED:
            self.metrics.observe_timing(call.rpc, response.metadata)
            self._typical_s += 0.05 * (time.monotonic() - call.started - self._typical_s)

    def stream_item(self, response) -> None:
        """One PredictStream answer: counted by outcome, its phase times to the metrics."""
        if response.HasField("error"):
            code = _CODE_BY_VALUE.get(response.error.code)
            self.metrics.stream_items.labels(code.name if code is not None else "UNKNOWN").inc()
        else:
            self.metrics.stream_items.labels("OK").inc()
            self.metrics.observe_timing("PredictStream", response.metadata)

    def finish(self, call: Call) -> None:
        """Ends a call: status and latency to the metrics, the span, one access-log line."""
        latency = time.monotonic() - call.started
        code = call.code.name
        if call.tokens:
            with self._work_lock:
                self._admitted_tokens -= call.tokens
        self.metrics.requests.labels(call.rpc, code, call.transport).inc()
        self.metrics.latency.labels(call.rpc, call.transport).observe(latency)
        self.metrics.in_flight.labels(call.rpc, call.transport).dec()
        if call.span is not None:
            from .tracing import end_server_span
            end_server_span(call.span, call.code)
        level = logging.INFO if call.code is not grpc.StatusCode.INTERNAL else logging.ERROR
        if call.rpc.startswith(("grpc.health", "health")) and call.code is grpc.StatusCode.OK:
            level = logging.DEBUG  # probes every few seconds: not worth a line each
        log.log(level, "rpc finished", extra={"rpc": call.rpc, "transport": call.transport, "code": code,
                                              "latency_ms": round(latency * 1e3, 3), "peer": call.peer,
                                              "client": call.client, "request_id": call.request_id})
        try:
            logs.request_id.reset(call.log_token)
        except ValueError:  # a generator's finally may run in another thread's context
            pass


_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
