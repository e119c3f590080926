"""Typed results of senti's RPCs, shared by the synchronous and the asyncio client."""
from dataclasses import dataclass
from typing import Mapping, Sequence

import grpc

from senti.v1 import senti_pb2 as pb

POLARITY = {pb.POLARITY_NEGATIVE: "negative", pb.POLARITY_POSITIVE: "positive"}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


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

    @classmethod
    def from_pb(cls, response: pb.PredictStreamResponse) -> "StreamResult":
        """From one PredictStream response."""
        if response.HasField("prediction"):
            return cls(response.id, Prediction.from_pb(response.prediction), None, "")
        return cls(response.id, None, _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN),
                   response.error.message)


def as_texts(texts: str | list[str] | tuple[str, ...]) -> list[str]:
    """One text or many, as a list."""
    return [texts] if isinstance(texts, str) else list(texts)


def predict_request(texts, strict: bool) -> pb.PredictRequest:
    """The PredictRequest of one text or many."""
    return pb.PredictRequest(texts=as_texts(texts), strict=strict)


def zero_shot_request(texts, labels, template: str, multi_label: bool, strict: bool,
                      examples: Mapping[str, Sequence[str]] | None = None,
                      classifier: str = "") -> pb.ClassifyZeroShotRequest:
    """The ClassifyZeroShotRequest of one text or many, with optional examples {label: [texts]}, or naming a
    classifier registered on the server instead of labels, template and examples."""
    return pb.ClassifyZeroShotRequest(
        texts=as_texts(texts), labels=list(labels), hypothesis_template=template, multi_label=multi_label,
        strict=strict, examples=[pb.LabelExamples(label=label, texts=as_texts(group))
                                 for label, group in (examples or {}).items()], classifier=classifier)


def stream_request(item_id: str, text: str, strict: bool) -> pb.PredictStreamRequest:
    """One PredictStream request."""
    return pb.PredictStreamRequest(id=item_id, text=text, strict=strict)
