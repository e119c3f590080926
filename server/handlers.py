"""Handlers: convert the request, call the engine, convert the result; errors go through one table.

`Service` is the transport-neutral part (a protobuf request, a deadline and a cancel token in; a protobuf
response out), used by gRPC's SentiServicer here and by the HTTP app; `Stream` is one PredictStream's state.
"""
import functools
import logging
import queue
import threading
import time
from concurrent.futures import Future

import grpc

from senti.model.classifiers import ClassifierRegistry
from senti.model.engine import Engine
from senti.model.errors import SHUTTING_DOWN, NotReady, SentiError
from senti.model.futures import CancelToken
from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from . import convert
from .errors import status_of
from .reload import EngineSlot, as_slot

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline on the monotonic clock, or None when it set none."""
    remaining = context.time_remaining()
    # grpc reports "no deadline" as a huge number of seconds.
    if remaining is None or remaining > 10 ** 8:
        return None
    return time.monotonic() + remaining


def cancel_token(context: grpc.ServicerContext) -> CancelToken:
    """A token that cancels the request's queued work when the RPC ends early (cancel, deadline, disconnect)."""
    token = CancelToken()
    context.add_callback(token.cancel)
    return token


def unary(method):
    """Runs a unary handler and turns any error into its status code through the table."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as error:
            code, message = status_of(error)
            context.abort(code, message)
    return wrapper


class Service:
    """senti.v1.SentiService's unary RPCs over the serving engine (an EngineSlot: reloads swap it), any transport."""

    def __init__(self, engine: Engine | EngineSlot, classifiers: ClassifierRegistry | None = None):
        self.slot = as_slot(engine)
        self.classifiers = classifiers if classifiers is not None else ClassifierRegistry(None)

    def predict(self, request: pb.PredictRequest, deadline: float | None, token: CancelToken) -> pb.PredictResponse:
        """Predict."""
        with self.slot.use() as engine:
            results, timing = engine.predict(list(request.texts), strict=request.strict, deadline=deadline,
                                             token=token)
        return pb.PredictResponse(predictions=[convert.prediction(r) for r in results],
                                  metadata=convert.metadata(timing))

    def classify_zero_shot(self, request: pb.ClassifyZeroShotRequest, deadline: float | None,
                           token: CancelToken) -> pb.ClassifyZeroShotResponse:
        """ClassifyZeroShot."""
        arguments = convert.zero_shot_arguments(request, self.classifiers)
        with self.slot.use() as engine:
            results, timing = engine.classify_zero_shot(list(request.texts), arguments.pop("labels"),
                                                        strict=request.strict, deadline=deadline, token=token,
                                                        **arguments)
        return pb.ClassifyZeroShotResponse(results=[convert.zero_shot_result(r) for r in results],
                                           metadata=convert.metadata(timing))

    def get_model_info(self, request: pb.GetModelInfoRequest, deadline: float | None,
                       token: CancelToken) -> pb.GetModelInfoResponse:
        """GetModelInfo."""
        with self.slot.use() as engine:
            return pb.GetModelInfoResponse(
                models=[convert.model_info(d) for d in engine.describe()], limits=convert.limits(engine.limits),
                execution_mode=engine.config.mode, version=VERSION, bundle_version=self.slot.version,
                **self._classifiers_info())

    def _classifiers_info(self) -> dict:
        """GetModelInfoResponse's classifiers and classifiers_version."""
        catalog = self.classifiers.catalog  # one read: the list and its version agree
        return {"classifiers": [convert.classifier_info(catalog.classifiers[name]) for name in sorted(catalog.classifiers)],
                "classifiers_version": catalog.version}

    def unary(self, rpc: str):
        """The method serving a unary RPC by its proto name ('Predict', ...)."""
        return {"Predict": self.predict, "ClassifyZeroShot": self.classify_zero_shot,
                "GetModelInfo": self.get_model_info}[rpc]


class SentiServicer(senti_pb2_grpc.SentiServiceServicer):
    """senti.v1.SentiService over gRPC: the Service with the call's deadline and cancellation."""

    def __init__(self, engine: Engine | EngineSlot, classifiers: ClassifierRegistry | None = None):
        self.slot = as_slot(engine)
        self.service = Service(self.slot, classifiers)

    @unary
    def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        return self.service.predict(request, deadline_of(context), cancel_token(context))

    @unary
    def ClassifyZeroShot(self, request: pb.ClassifyZeroShotRequest, context) -> pb.ClassifyZeroShotResponse:
        return self.service.classify_zero_shot(request, deadline_of(context), cancel_token(context))

    @unary
    def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        return self.service.get_model_info(request, deadline_of(context), cancel_token(context))

    def PredictStream(self, request_iterator, context):
        """Reads items on a helper thread, at most max_stream_in_flight at once; yields answers as they finish."""
        stream = Stream(self.slot, deadline_of(context))
        context.add_callback(stream.stop)
        reader = threading.Thread(target=stream.read, args=(request_iterator,), name="senti-stream-reader",
                                  daemon=True)
        reader.start()
        yield from stream.answers()


class Stream:
    """State of one PredictStream: a bounded number of items in flight and a queue of finished ones.

    The transport calls `stop` when the call ends (cancelled, deadline, disconnect, or done).
    """

    _END = object()

    def __init__(self, engine: Engine | EngineSlot, deadline: float | None):
        self.engine_slot = as_slot(engine)
        self.in_flight = self.engine_slot.current.limits.max_stream_in_flight
        self.deadline = deadline
        self.token = CancelToken()
        self.slots = threading.Semaphore(self.in_flight)
        self.finished: queue.Queue = queue.Queue()

    def stop(self) -> None:
        """The RPC ended (cancelled, deadline, disconnect, or done): cancel queued items, wake the reader."""
        self.token.cancel()
        # Nobody consumes answers any more: free enough slots that a reader waiting for one sees the end.
        for _ in range(self.in_flight):
            self.slots.release()

    def read(self, request_iterator) -> None:
        """Submits each request; blocking on a slot stops reading, so gRPC flow control holds the producer."""
        submitted = 0
        try:
            for request in request_iterator:
                self.slots.acquire()
                if self.token.cancelled:
                    self.slots.release()
                    break
                submitted += 1
                self._submit(request)
        except Exception as error:  # the client went away or sent garbage: answer what was accepted
            if not self.token.cancelled:
                log.info("stream reader stopped: %s", error)
        finally:
            self.finished.put((self._END, submitted))

    def _submit(self, request: pb.PredictStreamRequest) -> None:
        """Queues one item; its answer lands in `finished` when it is done, whatever happens."""
        started = time.monotonic()
        future = submit_item(self.engine_slot, request, self.deadline, self.token)
        future.add_done_callback(lambda done, rid=request.id: self.finished.put((rid, done, started)))

    def answers(self):
        """Yields one response per submitted item, then ends when the reader has finished."""
        answered, total = 0, None
        while total is None or answered < total:
            item = self.finished.get()
            if item[0] is self._END:
                total = item[1]
                continue
            request_id, done, started = item
            answered += 1
            self.slots.release()
            yield item_response(request_id, done, started)


def submit_item(slot: EngineSlot, request: pb.PredictStreamRequest, deadline: float | None,
                token: CancelToken) -> Future:
    """Queues one stream item on the serving engine (a reload's old engine finishes what it has queued); a
    refusal (not ready, draining, bad input) is the item's own failed future."""
    try:
        if not slot.streams_open:
            raise NotReady(SHUTTING_DOWN)
        with slot.use() as engine:
            return engine.submit_sentiment(request.text, strict=request.strict, deadline=deadline, token=token,
                                           name=f"item {request.id!r}")
    except SentiError as error:  # per item, like every other error
        future = Future()
        future.set_exception(error)
        return future


def item_response(request_id: str, done: Future, started: float) -> pb.PredictStreamResponse:
    """A finished stream item's prediction, or its error as google.rpc.Status."""
    if done.cancelled():
        status = convert.error_status(grpc.StatusCode.CANCELLED, "the request was cancelled")
        return pb.PredictStreamResponse(id=request_id, error=status)
    error = done.exception()
    if error is not None:
        code, message = status_of(error)
        return pb.PredictStreamResponse(id=request_id, error=convert.error_status(code, message))
    result = done.result()
    timing = result.timing
    timing.total_us = int((time.monotonic() - started) * 1e6)
    return pb.PredictStreamResponse(id=request_id, prediction=convert.prediction(result),
                                    metadata=convert.metadata(timing))
