"""Reads a model bundle: a folder with bundle.json, ONNX model(s), tokenizer.json and an optional head."""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SentiError

KINDS = ("embedding", "classifier", "nli")
TASKS_OF_KIND = {"embedding": {"sentiment", "zeroshot"}, "classifier": {"sentiment"}, "nli": {"zeroshot"}}


class BundleError(SentiError):
    """A bundle folder is missing, incomplete or of an unknown format."""


@dataclass(frozen=True)
class Bundle:
    """What the engine needs to know about one bundle; `meta` keeps the whole bundle.json."""

    path: Path
    name: str
    kind: str
    tasks: tuple[str, ...]
    labels: tuple[str, ...]
    max_length: int
    text_prefix: str
    input_names: tuple[str, ...]
    output_name: str
    quantization: str
    meta: dict[str, Any]

    def file(self, role: str) -> Path:
        """Absolute path of a file named in bundle.json `files` (model, model_fp32, hypothesis_model, tokenizer, head,
        ngram_head, sentencepiece, shared_weights)."""
        name = self.meta["files"].get(role)
        if name is None:
            raise BundleError(f"bundle {self.path} has no '{role}' file")
        return self.path / name

    def has_file(self, role: str) -> bool:
        """Whether bundle.json names a file for this role."""
        return role in self.meta["files"]

    def model_file(self, variant: str) -> Path:
        """The ONNX file of a variant: 'default' (as built, usually INT8) or 'fp32'."""
        return self.file("model_fp32" if variant == "fp32" else "model")

    @property
    def zeroshot(self) -> dict[str, Any]:
        """Zero-shot settings of an embedding bundle (template, temperature, ...)."""
        return self.meta.get("zeroshot", {})

    @property
    def nli(self) -> dict[str, Any]:
        """NLI settings of an nli bundle (entailment_id, contradiction_id, template)."""
        return self.meta.get("nli", {})

    @property
    def default_template(self) -> str:
        """The hypothesis template used when a request names none."""
        section = self.nli if self.kind == "nli" else self.zeroshot
        return section.get("template", "{}")


def load_bundle(path: Path | str) -> Bundle:
    """Reads and checks bundle.json; raises BundleError with what is wrong."""
    path = Path(path)
    meta_file = path / "bundle.json"
    if not meta_file.is_file():
        raise BundleError(f"no bundle at {path}: {meta_file.name} is missing (build one with `make model`)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format_version") != 1:
        raise BundleError(f"bundle {path} has format_version {meta.get('format_version')!r}; this senti reads 1")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise BundleError(f"bundle {path} has kind {kind!r}; expected one of {', '.join(KINDS)}")
    tasks = tuple(meta.get("tasks") or sorted(TASKS_OF_KIND[kind]))
    unknown = set(tasks) - TASKS_OF_KIND[kind]
    if unknown:
        raise BundleError(f"bundle {path} of kind {kind} cannot serve {', '.join(sorted(unknown))}")
    bundle = Bundle(
        path=path.resolve(), name=meta.get("name", path.name), kind=kind, tasks=tasks,
        labels=tuple(meta.get("labels", ())), max_length=int(meta["max_length"]),
        text_prefix=meta.get("text_prefix", ""), input_names=tuple(meta["onnx"]["inputs"]),
        output_name=meta["onnx"]["output"], quantization=meta.get("quantization", "none"), meta=meta,
    )
    roles = ("model", "tokenizer") + (("head",) if kind == "embedding" and "sentiment" in tasks else ())
    optional = tuple(r for r in ("ngram_head", "hypothesis_model", "shared_weights") if bundle.has_file(r))
    for role in roles + optional:
        if not bundle.file(role).is_file():
            raise BundleError(f"bundle {path} is incomplete: {bundle.file(role).name} is missing")
    return bundle
