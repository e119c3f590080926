"""Accuracy and confusion of the served model on a JSON-lines file of {"text", "label"}."""
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .sdk import SentiClient

SENTIMENT_LABELS = {"positive", "negative"}


@dataclass
class Report:
    """Accuracy with a confusion table: counts[(gold, predicted)]."""

    task: str
    labels: list[str]
    total: int = 0
    correct: int = 0
    counts: Counter = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        """Share of items predicted right."""
        return self.correct / self.total if self.total else 0.0

    def add(self, gold: str, predicted: str) -> None:
        """Records one item."""
        self.total += 1
        self.correct += gold == predicted
        self.counts[(gold, predicted)] += 1

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"task": self.task, "n": self.total, "accuracy": round(self.accuracy, 4), "labels": self.labels,
                "confusion": {g: {p: self.counts[(g, p)] for p in self.labels} for g in self.labels}}

    def table(self) -> str:
        """Human-readable accuracy and confusion (rows gold, columns predicted)."""
        width = max(8, *(len(label) * 2 for label in self.labels))
        lines = [f"task: {self.task}   n: {self.total}   accuracy: {self.accuracy:.2%}", "",
                 "gold \\ predicted".ljust(width + 2) + "".join(label.rjust(width) for label in self.labels)]
        for gold in self.labels:
            lines.append(gold.ljust(width + 2) + "".join(str(self.counts[(gold, p)]).rjust(width)
                                                          for p in self.labels))
        return "\n".join(lines)


def read_items(path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs from a JSON-lines file."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            record = json.loads(line)
            if "text" not in record or "label" not in record:
                raise ValueError(f"{path}:{number}: each line needs 'text' and 'label'")
            items.append((record["text"], record["label"]))
    return items


def read_examples(path: Path) -> dict[str, list[str]]:
    """Few-shot examples {label: [texts]} from a JSON-lines file of {"text", "label"}, labels in file order."""
    examples: dict[str, list[str]] = {}
    for text, label in read_items(path):
        examples.setdefault(label, []).append(text)
    return examples


def evaluate(client: SentiClient, items: list[tuple[str, str]], task: str = "auto", template: str = "",
             batch_size: int = 32, examples: dict[str, list[str]] | None = None) -> Report:
    """Runs the items through Predict (sentiment) or ClassifyZeroShot (labels found in the file, and in the
    examples); with examples it is few-shot ClassifyZeroShot, the same examples sent with every batch."""
    labels = sorted({label for _, label in items} | set(examples or ()))
    if examples and task == "sentiment":
        raise ValueError("examples are for zero-shot: leave --task out or set it to zeroshot")
    if task == "auto":
        task = "zeroshot" if examples or not set(labels) <= SENTIMENT_LABELS else "sentiment"
    report = Report("fewshot" if examples else task, labels)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        texts = [text for text, _ in chunk]
        if task == "sentiment":
            predicted = [p.polarity or p.label for p in client.predict(texts)]
        else:
            predicted = [r.best for r in client.classify_zero_shot(texts, labels, template=template,
                                                                   examples=examples)]
        for (_, gold), guess in zip(chunk, predicted):
            report.add(gold, guess)
    return report
