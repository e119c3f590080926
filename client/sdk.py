"""SentiClient: the synchronous Python SDK other services use to call senti."""
import random
import threading
import time
from typing import Iterable, Iterator, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from .channel import RetryPolicy, channel_options, channel_target
from .results import (Prediction, StreamResult, ZeroShotResult, predict_request, stream_request,
                      zero_shot_request)
from .resume import Attempt, Pending, can_resume
from .retry import ResourceExhaustedRetry
from .throttle import AdaptiveThrottle


class SentiClient:
    """A channel to senti (one server, a `dns:///` name or a list of replicas) with typed calls.

    Calls are spread over every address with round_robin and retried as `retry` says (RetryPolicy: UNAVAILABLE
    by gRPC's retry policy, RESOURCE_EXHAUSTED after the server's retry-after-ms hint). With `throttle`
    (AdaptiveThrottle()) a client the server keeps refusing sheds the excess itself: those calls fail at once
    with RESOURCE_EXHAUSTED and are never sent. Use it as a context manager or call close().
    """

    def __init__(self, target: str | Sequence[str] = "localhost:50051", *, timeout: float | None = 10.0,
                 wait_for_ready: bool = True, channel: grpc.Channel | None = None,
                 metadata: Sequence[tuple[str, str]] = (), retry: RetryPolicy = RetryPolicy(),
                 credentials: grpc.ChannelCredentials | None = None, throttle: AdaptiveThrottle | None = None):
        if channel is None:
            address, options = channel_target(target), channel_options(retry)
            channel = (grpc.secure_channel(address, credentials, options=options) if credentials is not None
                       else grpc.insecure_channel(address, options=options))
        self._channel = channel
        intercepted = grpc.intercept_channel(channel, ResourceExhaustedRetry(retry, throttle))
        self._stub = senti_pb2_grpc.SentiServiceStub(intercepted)
        self._health = health_pb2_grpc.HealthStub(channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.metadata = tuple(metadata)
        self.retry = retry

    def __enter__(self) -> "SentiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def _call_options(self, timeout: float | None) -> dict:
        return {"timeout": self.timeout if timeout is None else timeout, "wait_for_ready": self.wait_for_ready,
                "metadata": self.metadata}

    def predict(self, texts: str | Sequence[str], *, strict: bool = False,
                timeout: float | None = None) -> list[Prediction]:
        """Sentiment of one text or many, in order; raises grpc.RpcError with the server's status."""
        return [Prediction.from_pb(p) for p in self.predict_with_metadata(texts, strict=strict,
                                                                           timeout=timeout).predictions]

    def predict_with_metadata(self, texts: str | Sequence[str], *, strict: bool = False,
                              timeout: float | None = None) -> pb.PredictResponse:
        """The raw PredictResponse, timing metadata included."""
        return self._stub.Predict(predict_request(texts, strict), **self._call_options(timeout))

    def classify_zero_shot(self, texts: str | Sequence[str], labels: Sequence[str] = (), *, template: str = "",
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
        response = self._stub.ClassifyZeroShot(request, **self._call_options(timeout))
        return [ZeroShotResult.from_pb(r) for r in response.results]

    def stream(self, items: Iterable[tuple[str, str]], *, strict: bool = False, timeout: float | None = None,
               max_reconnects: int = 5) -> Iterator[StreamResult]:
        """Feeds (id, text) pairs through PredictStream and yields each id's result as it arrives.

        The server answers every id once, possibly out of order; a bad item yields a result with an error
        and the stream goes on. When the stream breaks with UNAVAILABLE (its replica was killed or drained,
        the network was cut), a new stream is opened on a replica that is up and the items not yet answered
        are resent, so every item is still answered exactly once; after `max_reconnects` breaks in a row with
        no answer between them the error is raised. `timeout` (default: none) bounds the whole feed.
        """
        source, source_lock, pending = iter(items), threading.Lock(), Pending()
        deadline = None if timeout is None else time.monotonic() + timeout
        resend: list[tuple[str, str]] = []
        reconnects = 0
        while True:
            attempt = Attempt(pending, resend)
            requests = (stream_request(i, t, strict) for i, t in attempt.items(source, source_lock))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for response in self._stub.PredictStream(requests, **{**self._call_options(remaining),
                                                                      "timeout": remaining}):
                    pending.answered(response.id)
                    reconnects = 0
                    yield StreamResult.from_pb(response)
                return
            except grpc.RpcError as error:
                if not can_resume(error, reconnects, max_reconnects):
                    raise
                reconnects += 1
                resend = attempt.end()
                time.sleep(self.retry.backoff_s(reconnects) * random.uniform(0.5, 1.0))
            finally:
                attempt.alive = False

    def info(self, timeout: float | None = None) -> pb.GetModelInfoResponse:
        """Models, tasks and limits of the server."""
        return self._stub.GetModelInfo(pb.GetModelInfoRequest(), **self._call_options(timeout))

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The server's health status name: SERVING, NOT_SERVING, ..."""
        response = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                      timeout=self.timeout if timeout is None else timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
