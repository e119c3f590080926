from google.api import annotations_pb2 as _annotations_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Polarity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLARITY_UNSPECIFIED: _ClassVar[Polarity]
    POLARITY_NEGATIVE: _ClassVar[Polarity]
    POLARITY_POSITIVE: _ClassVar[Polarity]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_SENTIMENT: _ClassVar[Task]
    TASK_ZERO_SHOT: _ClassVar[Task]
POLARITY_UNSPECIFIED: Polarity
POLARITY_NEGATIVE: Polarity
POLARITY_POSITIVE: Polarity
TASK_UNSPECIFIED: Task
TASK_SENTIMENT: Task
TASK_ZERO_SHOT: Task

class Metadata(_message.Message):
    __slots__ = ("tokenize_us", "queue_us", "inference_us", "total_us", "batch_size", "cache_hits")
    TOKENIZE_US_FIELD_NUMBER: _ClassVar[int]
    QUEUE_US_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_US_FIELD_NUMBER: _ClassVar[int]
    TOTAL_US_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    tokenize_us: int
    queue_us: int
    inference_us: int
    total_us: int
    batch_size: int
    cache_hits: int
    def __init__(self, tokenize_us: _Optional[int] = ..., queue_us: _Optional[int] = ..., inference_us: _Optional[int] = ..., total_us: _Optional[int] = ..., batch_size: _Optional[int] = ..., cache_hits: _Optional[int] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "score", "scores", "polarity", "truncated", "tokens")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    POLARITY_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    scores: _containers.RepeatedCompositeFieldContainer[LabelScore]
    polarity: Polarity
    truncated: bool
    tokens: int
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., polarity: _Optional[_Union[Polarity, str]] = ..., truncated: _Optional[bool] = ..., tokens: _Optional[int] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("texts", "strict")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    strict: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., strict: _Optional[bool] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "metadata")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    metadata: Metadata
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("id", "text", "strict")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    strict: bool
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("id", "prediction", "error", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    prediction: Prediction
    error: _status_pb2.Status
    metadata: Metadata
    def __init__(self, id: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class ClassifyZeroShotRequest(_message.Message):
    __slots__ = ("texts", "labels", "hypothesis_template", "multi_label", "strict", "examples", "classifier")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    hypothesis_template: str
    multi_label: bool
    strict: bool
    examples: _containers.RepeatedCompositeFieldContainer[LabelExamples]
    classifier: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., hypothesis_template: _Optional[str] = ..., multi_label: _Optional[bool] = ..., strict: _Optional[bool] = ..., examples: _Optional[_Iterable[_Union[LabelExamples, _Mapping]]] = ..., classifier: _Optional[str] = ...) -> None: ...

class LabelExamples(_message.Message):
    __slots__ = ("label", "texts")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    label: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, label: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class ZeroShotResult(_message.Message):
    __slots__ = ("labels", "truncated")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelScore]
    truncated: bool
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ClassifyZeroShotResponse(_message.Message):
    __slots__ = ("results", "metadata")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ZeroShotResult]
    metadata: Metadata
    def __init__(self, results: _Optional[_Iterable[_Union[ZeroShotResult, _Mapping]]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "tasks", "labels", "max_tokens", "backend", "quantization", "default_template", "provenance", "metrics")
    class ProvenanceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    tasks: _containers.RepeatedScalarFieldContainer[Task]
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_tokens: int
    backend: str
    quantization: str
    default_template: str
    provenance: _containers.ScalarMap[str, str]
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[Task, str]]] = ..., labels: _Optional[_Iterable[str]] = ..., max_tokens: _Optional[int] = ..., backend: _Optional[str] = ..., quantization: _Optional[str] = ..., default_template: _Optional[str] = ..., provenance: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_texts_per_request", "max_labels_per_request", "max_chars_per_text", "max_stream_in_flight", "max_examples_per_label", "max_examples_per_request")
    MAX_TEXTS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_LABELS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_PER_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_EXAMPLES_PER_LABEL_FIELD_NUMBER: _ClassVar[int]
    MAX_EXAMPLES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    max_texts_per_request: int
    max_labels_per_request: int
    max_chars_per_text: int
    max_stream_in_flight: int
    max_examples_per_label: int
    max_examples_per_request: int
    def __init__(self, max_texts_per_request: _Optional[int] = ..., max_labels_per_request: _Optional[int] = ..., max_chars_per_text: _Optional[int] = ..., max_stream_in_flight: _Optional[int] = ..., max_examples_per_label: _Optional[int] = ..., max_examples_per_request: _Optional[int] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("models", "limits", "execution_mode", "version", "bundle_version", "classifiers", "classifiers_version")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_MODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIERS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIERS_VERSION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    limits: Limits
    execution_mode: str
    version: str
    bundle_version: str
    classifiers: _containers.RepeatedCompositeFieldContainer[ClassifierInfo]
    classifiers_version: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., execution_mode: _Optional[str] = ..., version: _Optional[str] = ..., bundle_version: _Optional[str] = ..., classifiers: _Optional[_Iterable[_Union[ClassifierInfo, _Mapping]]] = ..., classifiers_version: _Optional[str] = ...) -> None: ...

class ClassifierInfo(_message.Message):
    __slots__ = ("name", "labels", "hypothesis_template", "multi_label", "examples", "description")
    class ExamplesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    hypothesis_template: str
    multi_label: bool
    examples: _containers.ScalarMap[str, int]
    description: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., hypothesis_template: _Optional[str] = ..., multi_label: _Optional[bool] = ..., examples: _Optional[_Mapping[str, int]] = ..., description: _Optional[str] = ...) -> None: ...
