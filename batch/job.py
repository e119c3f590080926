"""A bulk-scoring job on Ray Data: plan shards, skip the finished ones, score the rest in an actor pool.

    shards (driver)  ->  ray.data.from_items  ->  map_batches(RayShardScorer, ActorPoolStrategy)  ->  summaries

Each actor loads the engine once and turns one shard descriptor into one part file (see scoring.py); what
flows through Ray is only the descriptors and a summary row per shard, so the output is exactly one file per
shard whatever Ray's block sizes, and a rerun after a crash (same command) scores only the shards whose part
is missing. `ray.init()` starts a local Ray on this machine unless an address is given (a running cluster:
`auto`, `ray://head:10001`, or RAY_ADDRESS); on a cluster, every worker must reach the input, the output and
the bundle paths (a shared volume, or s3:// and the like for data) and have senti[batch] installed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from senti.model.bundle import load_bundle
from senti.model.errors import SentiError
from senti.model.validation import Limits, check_labels, check_template

from .inputs import expand, fingerprint, plan
from .outputs import MANIFEST, OUTPUT_FORMATS, SUCCESS, OutputDir
from .scoring import ScoringSpec

log = logging.getLogger("senti.batch")
TASKS = ("sentiment", "zeroshot")
MANIFEST_VERSION = 1


class JobError(Exception):
    """The job cannot run as asked (its message says what to change)."""


@dataclass
class JobConfig:
    """One senti-batch invocation (every field is a command-line flag)."""

    inputs: list[str]
    out: str
    task: str = "sentiment"
    labels: tuple[str, ...] = ()
    template: str = ""
    multi_label: bool = False
    strict: bool = False
    text_column: str = "text"
    id_column: str = "id"
    input_format: str | None = None
    output_format: str = "parquet"
    block_rows: int = 1000
    bundle: str = "bundles/e5-small"
    zeroshot_bundle: str | None = None
    variant: str = "default"
    address: str | None = None
    num_cpus: int | None = None  # local Ray only
    actors: int | None = None
    cpus_per_actor: int | None = None
    sessions: int = 0
    max_batch_size: int = 32
    max_batch_tokens: int = 2048
    overhead_tokens: int = 48
    cache_size: int = 10000
    max_chars_per_text: int = 10000
    max_blocks: int | None = None
    overwrite: bool = False
    progress: bool = True


@dataclass
class JobResult:
    """What one run did."""

    out: str
    shards: int
    skipped: int  # finished by an earlier run, not recomputed
    scored: int  # by this run
    rows: int  # scored by this run
    errors: int  # rows of this run with an error
    complete: bool
    seconds: float  # the whole run
    ray_start_s: float = 0.0
    pipeline_s: float = 0.0  # from submitting the shards to the last summary (actor start-up included)
    busy_s: float = 0.0  # summed over shards: reading, scoring, writing
    cpu_s: float = 0.0  # the actors' process CPU time, summed over shards
    actors: int = 0
    cpus_per_actor: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _bundle_identity(path: str) -> dict:
    bundle = load_bundle(path)
    digest = hashlib.sha256((Path(path) / "bundle.json").read_bytes()).hexdigest()
    return {"name": bundle.name, "bundle_json_sha256": digest}


def _check(config: JobConfig) -> list[str]:
    """Fails fast on what would make every row fail; returns the bundle paths (absolute)."""
    if config.task not in TASKS:
        raise JobError(f"unknown task {config.task!r}; use sentiment or zeroshot")
    if config.output_format not in OUTPUT_FORMATS:
        raise JobError(f"unknown output format {config.output_format!r}; use parquet or jsonl")
    if config.block_rows < 1:
        raise JobError("--block-rows must be at least 1")
    bundles = [os.path.abspath(config.bundle)] + ([os.path.abspath(config.zeroshot_bundle)]
                                                  if config.zeroshot_bundle else [])
    try:
        served = {task for path in bundles for task in load_bundle(path).tasks}
    except SentiError as error:
        raise JobError(str(error)) from None
    if config.task not in served:
        raise JobError(f"the bundles {', '.join(bundles)} do not serve {config.task}")
    if config.task == "zeroshot":
        try:
            check_labels(list(config.labels), Limits(max_labels_per_request=max(64, len(config.labels))))
            if config.template:
                check_template(config.template)
        except SentiError as error:
            raise JobError(str(error)) from None
    elif config.labels or config.template:
        raise JobError("--labels and --template are for --task zeroshot")
    return bundles


def _manifest(config: JobConfig, files: list[str], shards: int, id_type: str, bundles: list[str]) -> dict:
    """What must match for a rerun to resume: the inputs, the task and every knob that changes a result."""
    return {
        "version": MANIFEST_VERSION,
        "inputs": [fingerprint(f) for f in files],
        "task": config.task, "labels": list(config.labels), "template": config.template,
        "multi_label": config.multi_label, "strict": config.strict, "variant": config.variant,
        "text_column": config.text_column, "id_column": config.id_column, "id_type": id_type,
        "block_rows": config.block_rows, "output_format": config.output_format, "shards": shards,
        "max_chars_per_text": config.max_chars_per_text, "bundles": [_bundle_identity(b) for b in bundles],
    }


def _init_ray(config: JobConfig):
    import ray
    if ray.is_initialized():
        return ray
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING,
                    "configure_logging": True, "log_to_driver": True}
    if address is None:
        # a local Ray on this machine: the data never goes through the object store (workers read and write the
        # files), so a small one leaves the memory to the model
        kwargs["object_store_memory"] = 256 * 1024 * 1024
        if config.num_cpus:
            kwargs["num_cpus"] = config.num_cpus
    ray.init(address=address, **kwargs)
    return ray


def _layout(ray, config: JobConfig) -> tuple[int, int]:
    """(actors, CPUs per actor): by default one actor per node using all of that node's CPUs (the smallest
    node's count), so that each node holds one copy of the model and its batcher spans every core."""
    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    cpus = [c for c in cpus if c > 0] or [1]
    per_actor = config.cpus_per_actor or min(cpus)
    fitting = sum(c // per_actor for c in cpus)
    actors = config.actors or max(1, fitting)
    return actors, per_actor


def run_job(config: JobConfig) -> JobResult:
    """Runs (or resumes) a job; raises JobError for a job that cannot run, InputError for unusable input."""
    started = time.monotonic()
    bundles = _check(config)
    files = expand(config.inputs, config.input_format)
    shards, id_type = plan(files, config.block_rows, config.text_column, config.id_column, config.input_format)
    out = OutputDir(config.out)
    manifest = _manifest(config, files, len(shards), str(id_type), bundles)
    existing = out.read_json(MANIFEST)
    if config.overwrite:
        out.clear()
    elif existing is not None and existing != manifest:
        changed = sorted(k for k in manifest if existing.get(k) != manifest[k])
        raise JobError(f"{config.out} holds the output of another job (it differs in: {', '.join(changed)}); "
                       "give another --out, or --overwrite to start this job afresh there")
    elif existing is None and out.finished(config.output_format):
        raise JobError(f"{config.out} holds part files of an unknown job; give another --out, or --overwrite")
    out.ensure()
    stale = out.remove_temporaries()
    if stale:
        log.info("removed %d unfinished part(s) of an interrupted run", stale)
    out.write_json(MANIFEST, manifest)

    finished = out.finished(config.output_format)
    todo = [s for s in shards if s.index not in finished]
    if config.max_blocks is not None:
        todo = todo[: max(0, config.max_blocks)]
    skipped = len(shards) - len([s for s in shards if s.index not in finished])
    result = JobResult(config.out, len(shards), skipped, 0, 0, 0, False, 0.0)
    if todo:
        _score(config, bundles, str(id_type), todo, result)
    result.complete = not (set(s.index for s in shards) - out.finished(config.output_format))
    result.seconds = time.monotonic() - started
    if result.complete:
        out.write_json(SUCCESS, {"shards": len(shards), "rows": sum(s.rows for s in shards),
                                 "last_run": result.as_dict()})
    return result


def _score(config: JobConfig, bundles: list[str], id_type: str, todo, result: JobResult) -> None:
    t0 = time.monotonic()
    ray = _init_ray(config)
    result.ray_start_s = time.monotonic() - t0
    import ray.data
    from ray.data import ActorPoolStrategy

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is below: rows, not Ray's internal operators
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    actors, per_actor = _layout(ray, config)
    actors = min(actors, len(todo))
    result.actors, result.cpus_per_actor = actors, per_actor
    spec = ScoringSpec(
        task=config.task, bundles=tuple(bundles), out=config.out if "://" in config.out else os.path.abspath(config.out),
        output_format=config.output_format, text_column=config.text_column, id_column=config.id_column,
        id_type=id_type, labels=tuple(config.labels), template=config.template, multi_label=config.multi_label,
        strict=config.strict, sessions=config.sessions, cpus=per_actor, variant=config.variant,
        max_batch_size=config.max_batch_size, max_batch_tokens=config.max_batch_tokens,
        overhead_tokens=config.overhead_tokens, cache_size=config.cache_size,
        max_chars_per_text=config.max_chars_per_text, block_rows=config.block_rows)
    from .scoring import RayShardScorer

    dataset = ray.data.from_items([{"shard": s.to_json()} for s in todo], override_num_blocks=len(todo))
    scored = dataset.map_batches(
        RayShardScorer, fn_constructor_kwargs={"spec": spec.to_dict()}, batch_size=1,
        compute=ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors), num_cpus=per_actor)
    planned = {s.index: s.rows for s in todo}  # input rows (blank lines too): what the bar counts
    bar = _progress(config.progress, sum(planned.values()))
    t1 = time.monotonic()
    try:
        for row in scored.iter_rows():
            result.scored += 1
            result.rows += int(row["rows"])
            result.errors += int(row["errors"])
            result.busy_s += float(row["busy_s"])
            result.cpu_s += float(row["cpu_s"])
            bar.update(planned.get(int(row["shard"]), 0))
            bar.set_postfix(blocks=f"{result.scored}/{len(todo)}", errors=result.errors, refresh=False)
    finally:
        bar.close()
    result.pipeline_s = time.monotonic() - t1


def _progress(enabled: bool, total: int):
    from tqdm import tqdm
    return tqdm(total=total, unit=" rows", desc="senti-batch", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1, mininterval=0.5)


def estimate(result: JobResult) -> dict:
    """Throughput figures of a run: rows per second over the whole run, over the pipeline, and per busy actor."""
    return {
        "rows_per_s": round(result.rows / result.seconds, 1) if result.seconds else 0.0,
        "pipeline_rows_per_s": round(result.rows / result.pipeline_s, 1) if result.pipeline_s else 0.0,
        "cpu_ms_per_row": round(1000 * result.cpu_s / result.rows, 2) if result.rows else 0.0,
        "actor_busy_rows_per_s": (round(result.rows / (result.busy_s / max(1, result.actors)), 1)
                                  if result.busy_s else 0.0),
        "blocks_left": result.shards - result.skipped - result.scored,
    }
