"""The gRPC face of the serving policy (policy.py): admission, request id, auth, rate limit, metrics, log.

Admission is taken in gRPC's polling thread, before the call takes a worker: health and reflection are not
counted, and spare worker threads keep them answered under overload. A call refused there (the concurrency
backstop, or a queue wait already past max_queue_wait_ms) is answered in that thread without reading its
request, so a refusal storm costs no worker and no thread hand-off. A request that is not valid protobuf
(e.g. a string field with bad UTF-8, such as a lone surrogate) is INVALID_ARGUMENT. The request id is echoed
in trailing metadata; a refusal carries `retry-after-ms` there. A PredictStream pays the rate limit per item
and is slowed (gRPC flow control) rather than refused mid-stream.
"""
import threading
import time
from concurrent import futures
from typing import Iterator

import grpc

from .policy import REQUEST_ID_KEY, RETRY_AFTER_KEY, Call, Policy, Refusal

HEALTH_PREFIX = "/grpc.health.v1.Health/"
SENTI_PREFIX = "/senti.v1.SentiService/"


def rpc_name(method: str) -> str:
    """'/senti.v1.SentiService/Predict' -> 'Predict'; other services keep their service name."""
    if method.startswith(SENTI_PREFIX):
        return method[len(SENTI_PREFIX):]
    return method.lstrip("/")


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


class _InlineExecutor(futures.ThreadPoolExecutor):
    """Runs each task at once in the submitting thread (gRPC's polling thread), for answers that never block."""

    def __init__(self):
        super().__init__(max_workers=1)  # starts no thread: submit never reaches the pool

    def submit(self, fn, /, *args, **kwargs):
        future: futures.Future = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the future, as a pool would
            future.set_exception(error)
        return future


_IN_POLLING_THREAD = _InlineExecutor()


# -- the interceptor -------------------------------------------------------------------------------------

class ServingInterceptor(grpc.ServerInterceptor):
    """Applies the Policy around every handler."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._lock = threading.Lock()
        self.active_streams = 0

    @property
    def authenticator(self):
        """The policy's authenticator (None when no tokens are configured)."""
        return self.policy.authenticator

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        rpc = rpc_name(method)
        exempt = method.startswith(HEALTH_PREFIX)
        limited = method.startswith(SENTI_PREFIX)
        if limited:
            refusal = self.policy.door_refusal(rpc)
            if refusal is None and self.policy.admission is not None and not self.policy.admission.try_admit():
                refusal = self.policy.overloaded()
            if refusal is not None:
                return self._refused_at_door(rpc, refusal)
        options = {"request_deserializer": _safe(handler.request_deserializer),
                   "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, rpc, exempt, limited), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, rpc, exempt, limited, stream_in=False), **options)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, rpc, exempt, limited, stream_in=True), **options)
        return handler  # stream-unary: senti has none

    # -- per call ----------------------------------------------------------------------------------------

    def _begin(self, rpc: str, context) -> Call:
        call = self.policy.begin(rpc, "grpc", context.invocation_metadata(), context.peer())
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
        return call

    @staticmethod
    def _abort(call: Call, context, refusal: Refusal) -> None:
        if refusal.retry_after_ms is not None:
            context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),
                                           (RETRY_AFTER_KEY, str(refusal.retry_after_ms))))
        context.abort(refusal.code, refusal.message)

    def _refused_at_door(self, rpc: str, refusal: Refusal):
        """A handler that answers `refusal` in gRPC's polling thread, for any kind of method: it never reads the
        request and takes no worker, so a storm of refusals costs no thread hand-off (about a third of a
        refusal's CPU when a worker answered it)."""
        def refuse(_requests, context):
            call = self._begin(rpc, context)
            call.code = refusal.code
            try:
                self._abort(call, context, refusal)
            finally:
                self.policy.finish(call)
        # grpcio runs a behaviour on its `experimental_thread_pool` when it has one; a version without the
        # hook runs it on a worker, which answers the same.
        refuse.experimental_thread_pool = _IN_POLLING_THREAD
        return grpc.stream_unary_rpc_method_handler(refuse)

    def _admit(self, call: Call, context, exempt: bool, limited: bool, *, rate_limit: bool = True) -> None:
        """Auth, then the rate limit of unary calls; aborts the call (raises) when refused."""
        try:
            self.policy.admit(call, context.invocation_metadata(), exempt=exempt, limited=limited,
                              anonymous_client=_client_of(context), rate_limit=rate_limit)
        except Refusal as refusal:
            self._abort(call, context, refusal)

    def _unary(self, behavior, rpc: str, exempt: bool, limited: bool):
        def wrapper(request, context):
            call = self._begin(rpc, context)
            try:
                self._admit(call, context, exempt, limited)
                if isinstance(request, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, _undecodable_message(request))
                try:
                    self.policy.admit_work(call, request, _remaining(context))
                except Refusal as refusal:
                    self._abort(call, context, refusal)
                response = behavior(request, context)
                call.code = _code_of(context)
                if call.code is grpc.StatusCode.OK:
                    self.policy.succeeded(call, response)
                return response
            except BaseException:
                call.code = _code_of(context, failed=True)
                raise
            finally:
                self.policy.finish(call)
        return wrapper

    def _streaming(self, behavior, rpc: str, exempt: bool, limited: bool, *, stream_in: bool):
        def wrapper(request_or_iterator, context):
            call = self._begin(rpc, context)
            is_predict_stream = rpc == "PredictStream"
            with self._lock:  # every streaming call (health Watch too): the drain waits only for unary calls
                self.active_streams += 1
            if is_predict_stream:
                self.policy.metrics.in_flight_streams.inc()
            try:
                # A stream pays the rate limit per item (below), not at the door.
                self._admit(call, context, exempt, limited, rate_limit=not stream_in)
                bad: list[_Undecodable] = []
                if stream_in:
                    request_or_iterator = self._decodable(request_or_iterator, bad)
                    if self.policy.limits_stream_items and limited:
                        request_or_iterator = self._throttled(request_or_iterator, call, context)
                elif isinstance(request_or_iterator, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, _undecodable_message(request_or_iterator))
                for response in behavior(request_or_iterator, context):
                    if is_predict_stream:
                        self.policy.stream_item(response)
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
                    self.policy.metrics.in_flight_streams.dec()
                self.policy.finish(call)
        return wrapper

    @staticmethod
    def _decodable(requests: Iterator, bad: list) -> Iterator:
        """Passes parsed items on; stops at the first undecodable one and records it in `bad`."""
        for request in requests:
            if isinstance(request, _Undecodable):
                bad.append(request)
                return
            yield request

    def _throttled(self, requests: Iterator, call: Call, context) -> Iterator:
        """Passes stream items on at the client's rate: waiting here stops reading, so flow control slows
        the producer."""
        for request in requests:
            while context.is_active():
                wait = self.policy.item_wait(call)
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.1))
            else:
                return
            yield request


_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code_of(context, failed: bool = False) -> grpc.StatusCode:
    """The status the handler set (abort or set_code); an exception without one is UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int) and code in _CODE_BY_VALUE:
        return _CODE_BY_VALUE[code]
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def _remaining(context) -> float | None:
    """Seconds left of the caller's deadline, or None without one (gRPC reports none as a huge number)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 10 ** 8 else remaining


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
