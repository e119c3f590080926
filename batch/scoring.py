"""Scoring one shard with the serving engine: the Ray actor's work, usable without Ray.

The actor holds one `senti.model.engine.Engine` (batched mode: the server's dynamic batcher over one ONNX
Runtime session per core) loaded and warmed up once. A shard's texts go to the engine shortest first, so the
batcher's length grouping (`plan_group`, the same as the server's) cuts tight batches; results go back to input
order. A row that cannot be scored (missing, blank, too long or non-string text, a reading error) gets an
error message and the gRPC status name the API would have answered with; it never stops the shard.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from senti.model import errors as model_errors
from senti.model.engine import Engine, EngineConfig
from senti.model.types import Sentiment, ZeroShot, polarity
from senti.model.validation import Limits, check_text

from .inputs import Records, Shard, read_shard
from .outputs import OutputDir, schema

# The status names of senti.server.errors.STATUS_OF (tests/batch checks they agree), without importing grpc.
ERROR_CODES = (
    (model_errors.InvalidInput, "INVALID_ARGUMENT"),
    (model_errors.Overloaded, "RESOURCE_EXHAUSTED"),
    (model_errors.NotReady, "UNAVAILABLE"),
    (model_errors.DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (model_errors.Cancelled, "CANCELLED"),
    (model_errors.Unsupported, "FAILED_PRECONDITION"),
    (model_errors.NotFound, "NOT_FOUND"),
)
POLARITY = {"negative": "POLARITY_NEGATIVE", "positive": "POLARITY_POSITIVE", None: "POLARITY_UNSPECIFIED"}


def error_code(error: BaseException) -> tuple[str, str]:
    """(status name, message) of an error, as the API would report it (anything unexpected: INTERNAL)."""
    for kind, code in ERROR_CODES:
        if isinstance(error, kind):
            return code, str(error)
    return "INTERNAL", f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class ScoringSpec:
    """Everything an actor needs, JSON-able (it travels to every worker)."""

    task: str
    bundles: tuple[str, ...]
    out: str
    output_format: str = "parquet"
    text_column: str = "text"
    id_column: str = "id"
    id_type: str = "string"  # pyarrow type name of the output id column
    labels: tuple[str, ...] = ()
    template: str = ""
    multi_label: bool = False
    strict: bool = False
    sessions: int = 0  # 0: one per CPU given to the actor
    cpus: int = 0  # CPUs the actor was given (0: every core of the machine)
    variant: str = "default"
    max_batch_size: int = 32
    max_batch_tokens: int = 2048
    overhead_tokens: int = 48
    cache_size: int = 10000
    max_chars_per_text: int = 10000
    block_rows: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ScoringSpec":
        data = dict(data)
        data["bundles"] = tuple(data["bundles"])
        data["labels"] = tuple(data.get("labels", ()))
        return cls(**data)

    def engine_config(self) -> EngineConfig:
        sessions = self.sessions or self.cpus or os.cpu_count() or 1
        return EngineConfig(
            # solo_threads=1, no more than a batch session's: no session for lone items, a shard never is one
            mode="batched", sessions=sessions, intra_op_threads=1, solo_threads=1, max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens, max_wait_ms=0.0,
            # a whole shard is queued at once
            max_queue=max(1024, 2 * self.block_rows), overhead_tokens=self.overhead_tokens,
            cache_size=self.cache_size, variant=self.variant,
            limits=Limits(max_texts_per_request=max(1, self.block_rows), max_labels_per_request=max(64, len(self.labels)),
                          max_chars_per_text=self.max_chars_per_text))

    def arrow_id_type(self) -> pa.DataType:
        """The output id column's type; one pyarrow has no alias for (timestamps with a zone...) is written as
        strings."""
        try:
            return pa.type_for_alias(self.id_type)
        except ValueError:
            return pa.string()


@dataclass
class ShardResult:
    """What scoring one shard did."""

    shard: int
    rows: int
    errors: int
    busy_s: float
    cpu_s: float
    path: str = ""
    columns: dict = field(default_factory=dict, repr=False)


class Scorer:
    """One engine, many shards; `score_shard` reads, scores, and writes the shard's part file."""

    def __init__(self, spec: ScoringSpec | dict):
        self.spec = spec if isinstance(spec, ScoringSpec) else ScoringSpec.from_dict(spec)
        self.engine = Engine.load([Path(p) for p in self.spec.bundles], self.spec.engine_config())
        self.engine.start_cold()  # the first shard warms the sessions up while it is scored
        self.output = OutputDir(self.spec.out)
        self.schema = schema(self.spec.task, self.spec.id_column, self.spec.arrow_id_type())

    def close(self) -> None:
        self.engine.close()

    # -- one shard ---------------------------------------------------------------------------------------

    def score_shard(self, shard: Shard, write: bool = True) -> ShardResult:
        started, cpu = time.monotonic(), time.process_time()
        records = read_shard(shard, self.spec.text_column, self.spec.id_column)
        table = self.score(records)
        path = self.output.write_part(shard.index, self.spec.output_format, table) if write else ""
        errors = len(records) - table.column("error").null_count
        return ShardResult(shard.index, len(records), errors, time.monotonic() - started,
                           time.process_time() - cpu, path, {} if write else table.to_pydict())

    def score(self, records: Records) -> pa.Table:
        """The output table of these records, in their order."""
        n = len(records)
        results: list = [None] * n
        failures: list[tuple[str, str] | None] = [None] * n
        valid = []
        for i in range(n):
            problem = records.errors[i] or self._text_problem(records.texts[i])
            if problem is None:
                valid.append(i)
            else:
                failures[i] = problem if isinstance(problem, tuple) else ("INVALID_ARGUMENT", problem)
        order = length_order([records.texts[i] for i in valid])
        ordered = [valid[k] for k in order]
        if self.spec.task == "sentiment":
            self._sentiment(records, ordered, results, failures)
        else:
            self._zero_shot(records, ordered, results, failures)
        return self._table(records, results, failures)

    def _text_problem(self, text) -> str | tuple[str, str] | None:
        """Why a text cannot be scored, before it reaches the engine (None: it can)."""
        if text is None:
            return "the text is missing (null)"
        if not isinstance(text, str):
            return f"the text must be a string, not {type(text).__name__}"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "the text is not valid UTF-8"
        try:
            check_text(text, self.engine.limits)
        except model_errors.SentiError as error:
            return error_code(error)
        return None

    def _sentiment(self, records: Records, ordered: list[int], results: list, failures: list) -> None:
        # every text queued at once, shortest first: the batcher groups neighbours of similar length
        futures = zip(ordered, self.engine.submit_sentiments([records.texts[i] for i in ordered],
                                                             strict=self.spec.strict))
        for i, future in futures:
            try:
                results[i] = future.result()
            except Exception as error:  # this row's error; the others go on
                failures[i] = error_code(error)

    def _zero_shot(self, records: Records, ordered: list[int], results: list, failures: list) -> None:
        texts = [records.texts[i] for i in ordered]
        if not texts:
            return
        kwargs = dict(template=self.spec.template, multi_label=self.spec.multi_label, strict=self.spec.strict)
        try:
            scored, _timing = self.engine.classify_zero_shot(texts, list(self.spec.labels), **kwargs)
            for i, result in zip(ordered, scored):
                results[i] = result
            return
        except Exception:  # one text failed the whole call (strict mode: too long): find it, one at a time
            pass
        for i in ordered:
            try:
                [results[i]], _timing = self.engine.classify_zero_shot([records.texts[i]], list(self.spec.labels),
                                                                       **kwargs)
            except Exception as error:
                failures[i] = error_code(error)

    def _table(self, records: Records, results: list, failures: list) -> pa.Table:
        columns: dict[str, list] = {name: [] for name in self.schema.names}
        idc = self.spec.id_column
        sentiment = self.spec.task == "sentiment"
        for i in range(len(records)):
            columns[idc].append(records.ids[i])
            columns["row"].append(records.rows[i])
            result, failure = results[i], failures[i]
            if sentiment:
                ok = isinstance(result, Sentiment) and failure is None
                columns["label"].append(result.label if ok else None)
                columns["score"].append(result.score if ok else None)
                columns["scores"].append([{"label": lb, "score": s} for lb, s in result.scores] if ok else None)
                columns["polarity"].append(POLARITY[polarity(result.label)] if ok else None)
                columns["truncated"].append(result.truncated if ok else None)
                columns["tokens"].append(result.tokens if ok else None)
            else:
                ok = isinstance(result, ZeroShot) and failure is None
                columns["labels"].append([{"label": lb, "score": s} for lb, s in result.labels] if ok else None)
                columns["truncated"].append(result.truncated if ok else None)
            if ok:
                columns["error_code"].append(None)
                columns["error"].append(None)
            else:
                code, message = failure if failure is not None else ("INTERNAL", "no result")
                columns["error_code"].append(code)
                columns["error"].append(message)
        arrays = []
        for f in self.schema:
            values = columns[f.name]
            if f.name == idc:
                arrays.append(_id_array(values, f.type))
            else:
                arrays.append(pa.array(values, type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _id_array(values: list, kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string()).cast(kind, safe=False)


def length_order(texts: list[str]) -> list[int]:
    """Indices of `texts` from the shortest to the longest (ties in input order): the order the engine gets
    them in, so that the batcher's window holds texts of similar length."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


class RayShardScorer:
    """The callable class Ray Data's actor pool runs: one Scorer per actor, a batch of shard descriptors in,
    one summary row per shard out."""

    def __init__(self, spec: dict):
        self.scorer = Scorer(spec)

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        out: dict[str, list] = {"shard": [], "rows": [], "errors": [], "busy_s": [], "cpu_s": [], "path": []}
        for encoded in batch["shard"]:
            result = self.scorer.score_shard(Shard.from_json(str(encoded)))
            out["shard"].append(result.shard)
            out["rows"].append(result.rows)
            out["errors"].append(result.errors)
            out["busy_s"].append(result.busy_s)
            out["cpu_s"].append(result.cpu_s)
            out["path"].append(result.path)
        return {k: np.array(v) for k, v in out.items()}
