"""Request limits and the checks every request passes before it costs any compute."""
from dataclasses import dataclass
from typing import Sequence

from .errors import InvalidInput


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_texts_per_request: int = 256
    max_labels_per_request: int = 64
    max_chars_per_text: int = 10000
    max_chars_per_label: int = 100
    max_stream_in_flight: int = 64
    max_examples_per_label: int = 256
    max_examples_per_request: int = 512


def check_texts(texts: Sequence[str], limits: Limits, field: str = "texts") -> None:
    """Raises InvalidInput unless there are 1..max texts, each non-blank and within the character limit."""
    if not texts:
        raise InvalidInput(f"{field} is empty; send at least one text")
    if len(texts) > limits.max_texts_per_request:
        raise InvalidInput(f"{field} has {len(texts)} items; the limit is {limits.max_texts_per_request}")
    for i, text in enumerate(texts):
        check_text(text, limits, f"{field}[{i}]")


def check_text(text: str, limits: Limits, name: str = "text") -> None:
    """Raises InvalidInput for a blank text or one over the character limit."""
    if not text.strip():
        raise InvalidInput(f"{name} is empty or only whitespace")
    if len(text) > limits.max_chars_per_text:
        raise InvalidInput(f"{name} has {len(text)} characters; the limit is {limits.max_chars_per_text}")


def check_labels(labels: Sequence[str], limits: Limits) -> None:
    """Raises InvalidInput unless labels are 1..max, non-blank, short enough and unique."""
    if not labels:
        raise InvalidInput("labels is empty; name at least one candidate label")
    if len(labels) > limits.max_labels_per_request:
        raise InvalidInput(f"labels has {len(labels)} items; the limit is {limits.max_labels_per_request}")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if not label.strip():
            raise InvalidInput(f"labels[{i}] is empty or only whitespace")
        if len(label) > limits.max_chars_per_label:
            raise InvalidInput(f"labels[{i}] has {len(label)} characters; the limit is {limits.max_chars_per_label}")
        if label in seen:
            raise InvalidInput(f"labels[{i}] {label!r} repeats labels[{seen[label]}]")
        seen[label] = i


def check_template(template: str) -> None:
    """Raises InvalidInput unless the hypothesis template has exactly one '{}' and no other braces."""
    if template.count("{}") != 1:
        raise InvalidInput(f"hypothesis_template must contain '{{}}' exactly once, got {template!r}")
    if template.replace("{}", "").count("{") or template.replace("{}", "").count("}"):
        raise InvalidInput(f"hypothesis_template may contain no braces besides '{{}}', got {template!r}")


def check_examples(examples: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str], limits: Limits) -> None:
    """Raises InvalidInput unless each (label, texts) names one of `labels`, once, with 1..max non-blank texts
    within the character limit, and all of them together stay within the per-request limit."""
    total = sum(len(texts) for _, texts in examples)
    if total > limits.max_examples_per_request:
        raise InvalidInput(f"examples have {total} texts in all; the limit is {limits.max_examples_per_request} "
                           "per request")
    known = set(labels)
    seen: dict[str, int] = {}
    for i, (label, texts) in enumerate(examples):
        if label not in known:
            raise InvalidInput(f"examples[{i}].label {label!r} is not one of labels")
        if label in seen:
            raise InvalidInput(f"examples[{i}].label {label!r} repeats examples[{seen[label]}].label")
        seen[label] = i
        if not texts:
            raise InvalidInput(f"examples[{i}] ({label!r}) has no texts; give at least one or leave the label out")
        if len(texts) > limits.max_examples_per_label:
            raise InvalidInput(f"examples[{i}] ({label!r}) has {len(texts)} texts; the limit is "
                               f"{limits.max_examples_per_label} per label")
        for j, text in enumerate(texts):
            check_text(text, limits, f"examples[{i}].texts[{j}]")
