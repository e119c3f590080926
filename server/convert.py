"""Conversions between protobuf messages and the engine's domain objects."""
from google.rpc import status_pb2

from senti.model.classifiers import Classifier, ClassifierRegistry
from senti.model.engine import ModelDescription
from senti.model.errors import InvalidInput
from senti.model.types import Sentiment, Timing, ZeroShot, polarity
from senti.model.validation import Limits
from senti.v1 import senti_pb2 as pb

POLARITY = {"negative": pb.POLARITY_NEGATIVE, "positive": pb.POLARITY_POSITIVE, None: pb.POLARITY_UNSPECIFIED}
TASK = {"sentiment": pb.TASK_SENTIMENT, "zeroshot": pb.TASK_ZERO_SHOT}


def metadata(timing: Timing) -> pb.Metadata:
    """Timing -> Metadata."""
    return pb.Metadata(tokenize_us=timing.tokenize_us, queue_us=timing.queue_us, inference_us=timing.inference_us,
                       total_us=timing.total_us, batch_size=timing.batch_size, cache_hits=timing.cache_hits)


def prediction(result: Sentiment) -> pb.Prediction:
    """Sentiment -> Prediction."""
    return pb.Prediction(
        label=result.label, score=result.score,
        scores=[pb.LabelScore(label=label, score=score) for label, score in result.scores],
        polarity=POLARITY[polarity(result.label)], truncated=result.truncated, tokens=result.tokens)


def examples(items) -> list[tuple[str, list[str]]]:
    """Repeated LabelExamples -> (label, texts) pairs in request order."""
    return [(item.label, list(item.texts)) for item in items]


def zero_shot_arguments(request: pb.ClassifyZeroShotRequest, classifiers: ClassifierRegistry) -> dict:
    """The engine's labels, template, multi_label and examples of a request: its own, or those of the classifier
    it names (which then must be all it sends of them)."""
    if not request.classifier:
        return {"labels": list(request.labels), "template": request.hypothesis_template,
                "multi_label": request.multi_label, "examples": examples(request.examples)}
    sent = [name for name, present in (("labels", request.labels), ("hypothesis_template", request.hypothesis_template),
                                       ("examples", request.examples)) if present]
    if sent:
        raise InvalidInput(f"classifier {request.classifier!r} brings its own labels, template and examples; "
                           f"leave {', '.join(sent)} empty")
    named = classifiers.get(request.classifier)
    return {"labels": list(named.labels), "template": named.template,
            "multi_label": named.multi_label or request.multi_label,
            "examples": [(label, list(texts)) for label, texts in named.examples]}


def classifier_info(classifier: Classifier) -> pb.ClassifierInfo:
    """Classifier -> ClassifierInfo."""
    return pb.ClassifierInfo(name=classifier.name, labels=list(classifier.labels),
                             hypothesis_template=classifier.template, multi_label=classifier.multi_label,
                             examples=classifier.example_counts(), description=classifier.description)


def zero_shot_result(result: ZeroShot) -> pb.ZeroShotResult:
    """ZeroShot -> ZeroShotResult."""
    return pb.ZeroShotResult(labels=[pb.LabelScore(label=label, score=score) for label, score in result.labels],
                             truncated=result.truncated)


def error_status(code, message: str) -> status_pb2.Status:
    """A grpc.StatusCode and message -> google.rpc.Status for a per-item stream error."""
    return status_pb2.Status(code=code.value[0], message=message)


def model_info(description: ModelDescription) -> pb.ModelInfo:
    """ModelDescription -> ModelInfo."""
    return pb.ModelInfo(
        name=description.name, kind=description.kind, tasks=[TASK[t] for t in description.tasks],
        labels=list(description.labels), max_tokens=description.max_tokens, backend=description.backend,
        quantization=description.quantization, default_template=description.default_template,
        provenance=description.provenance, metrics=description.metrics)


def limits(value: Limits) -> pb.Limits:
    """Limits -> Limits message."""
    return pb.Limits(max_texts_per_request=value.max_texts_per_request,
                     max_labels_per_request=value.max_labels_per_request,
                     max_chars_per_text=value.max_chars_per_text, max_stream_in_flight=value.max_stream_in_flight,
                     max_examples_per_label=value.max_examples_per_label,
                     max_examples_per_request=value.max_examples_per_request)
