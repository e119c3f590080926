"""Named classifiers: label sets with their template and examples, registered once from a file, used by name.

The file is JSON, read at start and again whenever it (or an examples file it names) changes or on SIGHUP:

    {"classifiers": {
        "moderation": {"labels": ["辱骂", "广告", "正常"], "template": "这是一条{}评论", "multi_label": true,
                       "description": "comment moderation",
                       "examples": {"广告": ["加微信领红包"]}, "examples_file": "moderation.jsonl"}}}

`examples_file` (relative to the classifiers file) holds JSONL lines {"text": ..., "label": ...}, added to the
inline `examples`. Every classifier passes the checks a request's labels, template and examples pass, so a
file that a request could not have sent is refused whole, and the classifiers loaded before keep serving.
"""
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import InvalidInput, NotFound, SentiError
from .validation import Limits, check_examples, check_labels, check_template

log = logging.getLogger(__name__)
KEYS = {"labels", "template", "multi_label", "description", "examples", "examples_file"}


@dataclass(frozen=True)
class Classifier:
    """One registered classifier: what a ClassifyZeroShot request would otherwise send every time."""

    name: str
    labels: tuple[str, ...]
    template: str = ""  # empty: the model's default
    multi_label: bool = False
    examples: tuple[tuple[str, tuple[str, ...]], ...] = ()
    description: str = ""

    def example_counts(self) -> dict[str, int]:
        """{label: number of examples} for the labels that have any."""
        return {label: len(texts) for label, texts in self.examples}


@dataclass(frozen=True)
class Catalog:
    """The classifiers of one version of the file."""

    classifiers: dict[str, Classifier]
    version: str  # sha256 of the file and the examples files it names, [:12]; "" when there is no file


EMPTY = Catalog({}, "")


def _examples_from_jsonl(path: Path, where: str) -> list[tuple[str, str]]:
    """(label, text) pairs of a JSONL examples file."""
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InvalidInput(f"{where}: cannot read {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path}:{number}: not JSON ({error.msg})") from None
        if not (isinstance(item, dict) and isinstance(item.get("text"), str) and isinstance(item.get("label"), str)):
            raise InvalidInput(f'{path}:{number}: expected {{"text": "...", "label": "..."}}')
        pairs.append((item["label"], item["text"]))
    return pairs


def _classifier(name: str, spec, base: Path, limits: Limits) -> tuple[Classifier, list[Path]]:
    """One classifier from its JSON object, checked as a request would be; and the files it read."""
    where = f"classifier {name!r}"
    if not isinstance(spec, dict):
        raise InvalidInput(f"{where}: expected an object with labels (and template, multi_label, examples)")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown keys {unknown}; known: {sorted(KEYS)}")
    labels, template = spec.get("labels"), spec.get("template", "")
    if not (isinstance(labels, list) and all(isinstance(label, str) for label in labels)):
        raise InvalidInput(f"{where}: labels must be a list of strings")
    if not isinstance(template, str) or not isinstance(spec.get("multi_label", False), bool):
        raise InvalidInput(f"{where}: template must be a string and multi_label true or false")
    inline = spec.get("examples", {})
    if not (isinstance(inline, dict) and all(isinstance(texts, list) and all(isinstance(t, str) for t in texts)
                                             for texts in inline.values())):
        raise InvalidInput(f"{where}: examples must map labels to lists of texts")
    by_label = {label: list(texts) for label, texts in inline.items()}
    files = []
    if spec.get("examples_file"):
        path = base / str(spec["examples_file"])
        files.append(path)
        for label, text in _examples_from_jsonl(path, where):
            by_label.setdefault(label, []).append(text)
    examples = tuple((label, tuple(texts)) for label, texts in by_label.items())
    try:
        check_labels(labels, limits)
        if template:
            check_template(template)
        check_examples(examples, labels, limits)
    except InvalidInput as error:
        raise InvalidInput(f"{where}: {error}") from None
    return Classifier(name, tuple(labels), template, spec.get("multi_label", False), examples,
                      str(spec.get("description", ""))), files


def load_catalog(path: Path, limits: Limits) -> Catalog:
    """Reads and checks a classifiers file; InvalidInput with the file and the classifier at fault otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read the classifiers file {path}: {error.strerror}") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path}: not JSON ({error})") from None
    if not (isinstance(document, dict) and isinstance(document.get("classifiers"), dict)):
        raise InvalidInput(f'{path}: expected {{"classifiers": {{"name": {{"labels": [...]}}, ...}}}}')
    digest = hashlib.sha256(raw)
    classifiers = {}
    for name, spec in document["classifiers"].items():
        if not name.strip():
            raise InvalidInput(f"{path}: a classifier has an empty name")
        classifier, files = _classifier(name, spec, path.parent, limits)
        classifiers[name] = classifier
        for file in files:
            digest.update(file.read_bytes())
    return Catalog(classifiers, digest.hexdigest()[:12])


def _signature(path: Path) -> tuple:
    """What changes when the file or one of its examples files is edited (or replaced by a rename)."""
    names = [path] + [path.parent / p for p in _examples_files(path)]
    signature = []
    for name in names:
        try:
            stat = os.stat(name)
            signature.append((str(name), stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            signature.append((str(name), None))
    return tuple(signature)


def _examples_files(path: Path) -> list[str]:
    """The examples files a classifiers file names (best effort: an unreadable file names none)."""
    try:
        document = json.loads(path.read_bytes())
        return [str(spec["examples_file"]) for spec in document["classifiers"].values()
                if isinstance(spec, dict) and spec.get("examples_file")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


class ClassifierRegistry:
    """The classifiers that serve now; `reload()` replaces them all at once, or keeps them when the file is bad."""

    def __init__(self, path: Path | None, limits: Limits = Limits(), on_reload: Callable[[Catalog, bool], None] | None = None):
        self.path = Path(path) if path is not None else None
        self.limits = limits
        self.on_reload = on_reload or (lambda catalog, ok: None)
        self.catalog = EMPTY
        self._signature: tuple = ()
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        if self.path is not None:
            self.catalog = load_catalog(self.path, limits)  # at start a bad file is an error, not a warning
            self._signature = _signature(self.path)
            log.info("classifiers loaded", extra={"classifiers": sorted(self.catalog.classifiers),
                                                  "classifiers_version": self.catalog.version})

    def get(self, name: str) -> Classifier:
        """The classifier called `name`; NotFound (naming the registered ones) otherwise."""
        classifier = self.catalog.classifiers.get(name)
        if classifier is None:
            known = ", ".join(sorted(self.catalog.classifiers)) or "none (the server was started without --classifiers)"
            raise NotFound(f"classifier {name!r} is not registered; registered: {known}")
        return classifier

    def reload(self, force: bool = True) -> bool:
        """Re-reads the file (only when it changed, unless `force`); False keeps the old classifiers serving."""
        if self.path is None:
            return True
        with self._lock:
            signature = _signature(self.path)
            if not force and signature == self._signature:
                return True
            self._signature = signature  # a bad file is reported once, not at every poll
            try:
                catalog = load_catalog(self.path, self.limits)
            except InvalidInput as error:
                log.error("classifiers reload failed; the old ones keep serving",
                          extra={"error": str(error), "classifiers_version": self.catalog.version})
                self.on_reload(self.catalog, False)
                return False
            before, self.catalog = self.catalog.version, catalog
            log.info("classifiers reloaded", extra={"from_version": before, "classifiers_version": catalog.version,
                                                    "classifiers": sorted(catalog.classifiers)})
            self.on_reload(catalog, True)
        with self._changed:
            self._changed.notify_all()
        return True

    def wait_for_version(self, version: str, timeout: float) -> bool:
        """Waits until the serving catalog's version differs from `version` (tests and tools); True if it did."""
        with self._changed:
            return self._changed.wait_for(lambda: self.catalog.version != version, timeout=timeout)

    def watch(self, interval_s: float) -> threading.Thread | None:
        """Polls the file every `interval_s` and reloads it when it changed; stopped by close()."""
        if self.path is None or interval_s <= 0:
            return None

        def loop():
            while not self._stop.wait(interval_s):
                self.reload(force=False)

        thread = threading.Thread(target=loop, name="senti-classifiers", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stops watching."""
        self._stop.set()


def warm_classifiers(engine, catalog: Catalog) -> float:
    """Computes every classifier's prototypes on `engine` (their examples embedded, cached), so that the first
    request naming one costs what a plain zero-shot request costs; returns the seconds it took."""
    started = time.monotonic()
    for classifier in catalog.classifiers.values():
        try:
            engine.classify_zero_shot([classifier.labels[0]], list(classifier.labels), template=classifier.template,
                                      multi_label=classifier.multi_label,
                                      examples=[(label, list(texts)) for label, texts in classifier.examples])
        except SentiError as error:  # e.g. an NLI bundle serves zero-shot: requests naming it get the same error
            log.warning("classifier not warmed", extra={"classifier": classifier.name, "error": str(error)})
    return time.monotonic() - started
