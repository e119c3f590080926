"""The server interceptor: admission, request id, trace span, auth, per-client rate limit, metrics, access log.

The policies themselves live in admission.py, auth.py and ratelimit.py; this module applies them to calls.

Everything a call passes through before and after its handler, in one place and in this order:
0. admission (in gRPC's polling thread, before the call takes a worker): at most max_concurrent_rpcs
   SentiService calls at once; beyond it RESOURCE_EXHAUSTED at once with a `retry-after-ms` hint. Health and
   reflection are not counted, and spare worker threads keep them answered under overload. A request that is
   not valid protobuf (e.g. a string field with bad UTF-8, such as a lone surrogate) is INVALID_ARGUMENT;
1. request id: the caller's `x-request-id` metadata (sanitised) or a new one; echoed in trailing metadata and
   carried by every log line written while the handler runs;
2. trace span (when tracing is configured), continuing the caller's W3C `traceparent`;
3. bearer-token auth (when tokens are configured): UNAUTHENTICATED without a valid `authorization: Bearer ...`;
   the health service is exempt so that probes and balancers need no secret;
4. per-client rate limit (when configured): RESOURCE_EXHAUSTED with trailing metadata `retry-after-ms`; a
   PredictStream pays one token per item and is slowed (gRPC flow control) rather than refused mid-stream;
5. the handler; then the status code, latency and phase times go to the metrics and one JSON access-log line.
"""
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import grpc

from . import logs
from .admission import Admission
from .auth import Authenticator
from .metrics import Metrics
from .ratelimit import RateLimiter

log = logging.getLogger("senti.access")

REQUEST_ID_KEY = "x-request-id"
RETRY_AFTER_KEY = "retry-after-ms"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
SENTI_PREFIX = "/senti.v1.SentiService/"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._:/=+-]")


def rpc_name(method: str) -> str:
    """'/senti.v1.SentiService/Predict' -> 'Predict'; other services keep their service name."""
    if method.startswith(SENTI_PREFIX):
        return method[len(SENTI_PREFIX):]
    return method.lstrip("/")


def clean_request_id(value: str | None) -> str:
    """The caller's request id made safe for logs (printable ASCII, at most 64 chars), or a new uuid4 hex."""
    if value:
        cleaned = _SAFE_ID.sub("", value)[:64]
        if cleaned:
            return cleaned
    return uuid.uuid4().hex


class _Undecodable:
    """Stands for a request message that failed to parse, so the handler can answer INVALID_ARGUMENT."""

    def __init__(self, error: Exception):
        self.error = error


def _safe(deserializer):
    """A request deserializer that returns _Undecodable instead of raising (gRPC would answer INTERNAL)."""
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as error:  # noqa: BLE001 - any parse failure is the caller's bad input
            return _Undecodable(error)
    return parse


def _undecodable_message(item: "_Undecodable") -> str:
    detail = "a string field is not valid UTF-8" if "UTF-8" in str(item.error) else "it does not parse"
    return f"the request is not a valid protobuf message of this method: {detail}"


# -- the interceptor -------------------------------------------------------------------------------------

@dataclass
class _Call:
    """What the interceptor knows of one call while it runs."""

    rpc: str
    request_id: str
    started: float
    client: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK


class ServingInterceptor(grpc.ServerInterceptor):
    """Request id, tracing, auth, rate limit, metrics and access log around every handler."""

    def __init__(self, metrics: Metrics, *, admission: Admission | None = None,
                 authenticator: Authenticator | None = None, rate_limiter: RateLimiter | None = None, tracer=None):
        self.metrics = metrics
        self.admission = admission
        self.authenticator = authenticator if authenticator is not None and authenticator.enabled else None
        self.rate_limiter = rate_limiter
        self.tracer = tracer
        self._lock = threading.Lock()
        self.active_streams = 0
        self._typical_s = 0.05  # moving average of unary SentiService latency: the retry hint when full

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        rpc = rpc_name(method)
        exempt = method.startswith(HEALTH_PREFIX)
        limited = method.startswith(SENTI_PREFIX)
        refused = limited and self.admission is not None and not self.admission.try_admit()
        options = {"request_deserializer": _safe(handler.request_deserializer),
                   "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, rpc, exempt, limited, refused), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, rpc, exempt, limited, refused, stream_in=False), **options)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, rpc, exempt, limited, refused, stream_in=True), **options)
        return handler  # stream-unary: senti has none

    # -- per call ----------------------------------------------------------------------------------------

    def _begin(self, rpc: str, context) -> tuple[_Call, object]:
        metadata = context.invocation_metadata() or ()
        call = _Call(rpc, clean_request_id(next((v for k, v in metadata if k == REQUEST_ID_KEY), None)),
                     time.monotonic())
        token = logs.request_id.set(call.request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
        self.metrics.in_flight.labels(rpc).inc()
        return call, token

    def _refuse_overloaded(self, call: _Call, context) -> None:
        """RESOURCE_EXHAUSTED for a call beyond max_concurrent_rpcs, with a retry hint of a typical call time."""
        self.metrics.rejected.labels("concurrency").inc()
        retry_ms = max(1, math.ceil(self._typical_s * 1000))
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id), (RETRY_AFTER_KEY, str(retry_ms))))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"the server is at its limit of {self.admission.limit} concurrent requests; "
                      f"retry after {retry_ms} ms, or on another replica")

    def _admit(self, call: _Call, context, exempt: bool, limited: bool, *, rate_limit: bool = True) -> None:
        """Auth, then the rate limit of unary calls; aborts the call (raises) when refused."""
        identity = None
        if self.authenticator is not None and not exempt:
            identity = self.authenticator.client(context.invocation_metadata() or ())
            if identity is None:
                self.metrics.rejected.labels("unauthenticated").inc()
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token; send metadata "
                                                                "'authorization: Bearer <token>'")
        call.client = identity or _client_of(context)
        if self.rate_limiter is not None and limited and rate_limit:
            wait = self.rate_limiter.take(call.client)
            if wait > 0:
                self.metrics.rejected.labels("rate_limit").inc()
                retry_ms = max(1, math.ceil(wait * 1000))
                context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id), (RETRY_AFTER_KEY, str(retry_ms))))
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"rate limit of {self.rate_limiter.rate:g} requests/s exceeded; "
                              f"retry after {retry_ms} ms")

    def _finish(self, call: _Call, context, span, token) -> None:
        latency = time.monotonic() - call.started
        code = call.code.name
        self.metrics.requests.labels(call.rpc, code).inc()
        self.metrics.latency.labels(call.rpc).observe(latency)
        self.metrics.in_flight.labels(call.rpc).dec()
        if span is not None:
            _end_span(span, call.code)
        level = logging.INFO if call.code is not grpc.StatusCode.INTERNAL else logging.ERROR
        if call.rpc.startswith("grpc.health") and call.code is grpc.StatusCode.OK:
            level = logging.DEBUG  # probes every few seconds: not worth a line each
        log.log(level, "rpc finished", extra={"rpc": call.rpc, "code": code, "latency_ms": round(latency * 1e3, 3),
                                              "peer": context.peer(), "client": call.client,
                                              "request_id": call.request_id})
        logs.request_id.reset(token)

    def _unary(self, behavior, rpc: str, exempt: bool, limited: bool, refused: bool):
        def wrapper(request, context):
            call, token = self._begin(rpc, context)
            span = self._span(call, context)
            try:
                if refused:
                    self._refuse_overloaded(call, context)
                self._admit(call, context, exempt, limited)
                if isinstance(request, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, _undecodable_message(request))
                response = behavior(request, context)
                call.code = _code_of(context)
                if call.code is grpc.StatusCode.OK and rpc in _TIMED:
                    self.metrics.observe_timing(rpc, response.metadata)
                    self._typical_s += 0.05 * (time.monotonic() - call.started - self._typical_s)
                return response
            except BaseException:
                call.code = _code_of(context, failed=True)
                raise
            finally:
                self._finish(call, context, span, token)
        return wrapper

    def _streaming(self, behavior, rpc: str, exempt: bool, limited: bool, refused: bool, *, stream_in: bool):
        def wrapper(request_or_iterator, context):
            call, token = self._begin(rpc, context)
            span = self._span(call, context)
            is_predict_stream = rpc == "PredictStream"
            with self._lock:  # every streaming call (health Watch too): the drain waits only for unary calls
                self.active_streams += 1
            if is_predict_stream:
                self.metrics.in_flight_streams.inc()
            try:
                if refused:
                    self._refuse_overloaded(call, context)
                # A stream pays the rate limit per item (below), not at the door.
                self._admit(call, context, exempt, limited, rate_limit=not stream_in)
                bad: list[_Undecodable] = []
                if stream_in:
                    request_or_iterator = self._decodable(request_or_iterator, bad)
                    if self.rate_limiter is not None and limited:
                        request_or_iterator = self._throttled(request_or_iterator, call.client, context)
                elif isinstance(request_or_iterator, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, _undecodable_message(request_or_iterator))
                for response in behavior(request_or_iterator, context):
                    if is_predict_stream:
                        self._observe_item(response)
                    yield response
                if bad:  # every item read before the bad one was answered; the stream cannot go on
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, _undecodable_message(bad[0]))
                call.code = _code_of(context)
            except GeneratorExit:  # the RPC ended under us: the caller cancelled, or the server is stopping
                call.code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                call.code = _code_of(context, failed=True)
                raise
            finally:
                with self._lock:
                    self.active_streams -= 1
                if is_predict_stream:
                    self.metrics.in_flight_streams.dec()
                # The generator runs its finally in whichever thread closes it; reset the id there safely.
                try:
                    self._finish(call, context, span, token)
                except ValueError:  # the context-var token belongs to another thread's context
                    pass
        return wrapper

    @staticmethod
    def _decodable(requests: Iterator, bad: list) -> Iterator:
        """Passes parsed items on; stops at the first undecodable one and records it in `bad`."""
        for request in requests:
            if isinstance(request, _Undecodable):
                bad.append(request)
                return
            yield request

    def _throttled(self, requests: Iterator, client: str, context) -> Iterator:
        """Passes stream items on at the client's rate: waiting here stops reading, so flow control slows
        the producer."""
        for request in requests:
            while context.is_active():
                wait = self.rate_limiter.take(client)
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.1))
            else:
                return
            yield request

    def _observe_item(self, response) -> None:
        if response.HasField("error"):
            self.metrics.stream_items.labels(grpc.StatusCode(_CODE_BY_VALUE[response.error.code]).name
                                             if response.error.code in _CODE_BY_VALUE else "UNKNOWN").inc()
        else:
            self.metrics.stream_items.labels("OK").inc()
            self.metrics.observe_timing("PredictStream", response.metadata)

    def _span(self, call: _Call, context):
        if self.tracer is None:
            return None
        from .tracing import start_server_span
        return start_server_span(self.tracer, call.rpc, context.invocation_metadata() or (), call.request_id)


_TIMED = frozenset({"Predict", "ClassifyZeroShot"})
_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code_of(context, failed: bool = False) -> grpc.StatusCode:
    """The status the handler set (abort or set_code); an exception without one is UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int) and code in _CODE_BY_VALUE:
        return _CODE_BY_VALUE[code]
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def _client_of(context) -> str:
    """Who is calling, without a token: the mTLS certificate's common name, else the peer's address."""
    try:
        names = context.auth_context().get("x509_common_name")
    except Exception:  # noqa: BLE001 - insecure channels have no auth context on some versions
        names = None
    if names:
        return "cn:" + names[0].decode(errors="replace")
    peer = context.peer() or "unknown"
    # 'ipv4:127.0.0.1:5555' / 'ipv6:[::1]:5555': keep the host, drop the port.
    kind, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else peer
    return host


def _end_span(span, code: grpc.StatusCode) -> None:
    from .tracing import end_server_span
    end_server_span(span, code)
