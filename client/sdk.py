"""SentiClient: the Python SDK other services use to call senti."""
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import senti_pb2 as pb
from protos import senti_pb2_grpc

POLARITY = {pb.POLARITY_NEGATIVE: "negative", pb.POLARITY_POSITIVE: "positive"}
TASK = {pb.TASK_SENTIMENT: "sentiment", pb.TASK_ZERO_SHOT: "zeroshot"}


@dataclass(frozen=True)
class Prediction:
    """Sentiment of one text."""

    label: str
    score: float
    scores: dict[str, float]
    polarity: str | None
    truncated: bool
    tokens: int

    @classmethod
    def from_pb(cls, message: pb.Prediction) -> "Prediction":
        """From the protobuf message."""
        return cls(message.label, message.score, {s.label: s.score for s in message.scores},
                   POLARITY.get(message.polarity), message.truncated, message.tokens)


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot result of one text: (label, score) pairs, highest first."""

    labels: list[tuple[str, float]]
    truncated: bool

    @property
    def best(self) -> str:
        """The highest-scoring label."""
        return self.labels[0][0]

    @classmethod
    def from_pb(cls, message: pb.ZeroShotResult) -> "ZeroShotResult":
        """From the protobuf message."""
        return cls([(s.label, s.score) for s in message.labels], message.truncated)


@dataclass(frozen=True)
class StreamResult:
    """One answer of a stream: the caller's id and either a prediction or an error."""

    id: str
    prediction: Prediction | None
    error_code: grpc.StatusCode | None
    error_message: str

    @property
    def ok(self) -> bool:
        """True when the item has a prediction."""
        return self.prediction is not None


_CODES = {code.value[0]: code for code in grpc.StatusCode}


class SentiClient:
    """A channel to one senti server with typed calls; use as a context manager or call close()."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 10.0, wait_for_ready: bool = True,
                 channel: grpc.Channel | None = None, metadata: Sequence[tuple[str, str]] = ()):
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = senti_pb2_grpc.SentiServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.metadata = tuple(metadata)

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
        texts = [texts] if isinstance(texts, str) else list(texts)
        response = self._stub.Predict(pb.PredictRequest(texts=texts, strict=strict), **self._call_options(timeout))
        return [Prediction.from_pb(p) for p in response.predictions]

    def predict_with_metadata(self, texts: Sequence[str], *, strict: bool = False,
                              timeout: float | None = None) -> pb.PredictResponse:
        """The raw PredictResponse, timing metadata included."""
        return self._stub.Predict(pb.PredictRequest(texts=list(texts), strict=strict), **self._call_options(timeout))

    def classify_zero_shot(self, texts: str | Sequence[str], labels: Sequence[str], *, template: str = "",
                           multi_label: bool = False, strict: bool = False,
                           timeout: float | None = None) -> list[ZeroShotResult]:
        """Zero-shot classification of one text or many into the given labels."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        request = pb.ClassifyZeroShotRequest(texts=texts, labels=list(labels), hypothesis_template=template,
                                             multi_label=multi_label, strict=strict)
        response = self._stub.ClassifyZeroShot(request, **self._call_options(timeout))
        return [ZeroShotResult.from_pb(r) for r in response.results]

    def stream(self, items: Iterable[tuple[str, str]], *, strict: bool = False,
               timeout: float | None = None) -> Iterator[StreamResult]:
        """Feeds (id, text) pairs through PredictStream and yields each id's result as it arrives.

        The server answers every id once, possibly out of order; a bad item yields a result with an error
        and the stream goes on. `timeout` (default: none) bounds the whole stream.
        """
        requests = (pb.PredictStreamRequest(id=item_id, text=text, strict=strict) for item_id, text in items)
        options = self._call_options(timeout)
        options["timeout"] = timeout
        for response in self._stub.PredictStream(requests, **options):
            if response.HasField("prediction"):
                yield StreamResult(response.id, Prediction.from_pb(response.prediction), None, "")
            else:
                yield StreamResult(response.id, None, _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN),
                                   response.error.message)

    def info(self, timeout: float | None = None) -> pb.GetModelInfoResponse:
        """Models, tasks and limits of the server."""
        return self._stub.GetModelInfo(pb.GetModelInfoRequest(), **self._call_options(timeout))

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The server's health status name: SERVING, NOT_SERVING, ..."""
        response = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                      timeout=self.timeout if timeout is None else timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
