"""The engine: loaded bundles, their executors and caches, and the sentiment and zero-shot tasks."""
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import futures as fx
from .batcher import BatchEvent, Batcher, BatchOutput, DirectExecutor
from .bundle import Bundle, load_bundle
from .cache import LruCache
from .errors import SHUTTING_DOWN, InvalidInput, NotReady, Unsupported
from .heads import DenseHead, cosine_zero_shot, fewshot_prototype, fewshot_scores, nli_zero_shot, softmax
from .ngrams import CharNgramHead
from .runtime import OnnxRunner, backend_name, load_shared_initializers
from .tokenize import load_tokenizer
from .types import Encoded, Sentiment, Timing, ZeroShot
from .validation import Limits, check_examples, check_labels, check_template, check_text, check_texts

log = logging.getLogger(__name__)

MODES = ("batched", "lock", "per-thread")
# Warm-up: short inputs at every power-of-two batch size, then the largest padded shapes the batch limits allow
# (so that each session's memory arena has grown to its peak before the first caller).
WARMUP_SHORT_LENGTH = 8
# Few-shot (ClassifyZeroShot with examples) settings of an embedding bundle whose bundle.json `zeroshot` section
# names none. A label with n examples is scored against heads.fewshot_prototype(h, examples, k, center, example
# center), with `center` the zero-shot multi_label_center (the text-hypothesis cosine at even odds) and
# fewshot_example_center its text-example twin; single-label softmax(margin / temperature), multi-label
# sigmoid(margin / multi_label_temperature). Chosen for the default bundle (multilingual-e5-small INT8, template
# 这是一条{}新闻) on FewCLUE's dev splits (TNEWS, EPRSTMT; each of the five train splits as examples, dev as
# test): the example center by logistic regression of "label applies" on the text-example cosine (0.934 TNEWS,
# 0.932 EPRSTMT), k by mean accuracy over both tasks, the single-label temperature by NLL (geometric mean of
# 0.00461 and 0.00491), the multi-label one by NLL over every (text, label) of TNEWS (EPRSTMT's two
# exclusive labels are no multi-label task). These were tuned on the dev files that also measure them.
# See README "Model quality".
FEWSHOT_DEFAULTS = {"fewshot_k": 12.0, "fewshot_example_center": 0.933, "fewshot_temperature": 0.00476,
                    "fewshot_multi_label_temperature": 0.0095}


def warmup_shapes(max_batch_size: int, max_batch_tokens: int, max_length: int) -> list[tuple[int, int]]:
    """(batch size, tokens) pairs that cover the batches the batcher can produce under these limits."""
    sizes = sorted({min(2 ** i, max_batch_size) for i in range(max_batch_size.bit_length() + 1)})
    shapes = [(size, min(WARMUP_SHORT_LENGTH, max_length)) for size in sizes]
    widest = max(1, min(max_length, max_batch_tokens // max_batch_size))
    shapes.append((max_batch_size, widest))
    shapes.append((max(1, min(max_batch_size, max_batch_tokens // max_length)), max_length))
    return list(dict.fromkeys(shapes))


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs models; every field mirrors a server setting."""

    mode: str = "batched"
    sessions: int = 0
    intra_op_threads: int = 0
    solo_threads: int = 0
    max_batch_size: int = 32
    max_batch_tokens: int = 2048
    max_wait_ms: float = 0.0
    max_queue: int = 1024
    overhead_tokens: int = 48
    cache_size: int = 10000
    variant: str = "default"
    pad_to_max_length: bool = False
    limits: Limits = field(default_factory=Limits)

    def resolved_sessions(self) -> tuple[int, int]:
        """(sessions, intra-op threads per session), filling 0s from the core count."""
        cores = os.cpu_count() or 1
        if self.mode == "lock":
            return 1, self.intra_op_threads or cores
        sessions = self.sessions or cores
        return sessions, self.intra_op_threads or max(1, cores // sessions)

    def resolved_solo_threads(self) -> int:
        """Threads of the session for lone items (0 = every core); 0 when batched mode has none: it would
        have no more threads than a batch session."""
        threads = self.solo_threads or os.cpu_count() or 1
        return threads if self.mode == "batched" and threads > self.resolved_sessions()[1] else 0


@dataclass(frozen=True)
class Row:
    """One input's model output with what the caller should know about its input."""

    values: np.ndarray
    truncated: bool
    tokens: int


@dataclass(frozen=True)
class Prototype:
    """A label's few-shot prototype: a text scores cos(text, vector) - bias against it (heads.fewshot_prototype)."""

    vector: np.ndarray
    bias: float


@dataclass(frozen=True)
class ModelDescription:
    """What GetModelInfo reports about one loaded bundle."""

    name: str
    kind: str
    tasks: tuple[str, ...]
    labels: tuple[str, ...]
    max_tokens: int
    backend: str
    quantization: str
    default_template: str
    provenance: dict[str, str]
    metrics: dict[str, float]


class LoadedModel:
    """One bundle with its tokenizer, sessions, executor and result cache."""

    def __init__(self, bundle: Bundle, config: EngineConfig, observer: Callable[[BatchEvent], None] | None):
        self.bundle = bundle
        self.tokenizer = load_tokenizer(bundle)
        sessions, threads = config.resolved_sessions()
        pad_to = bundle.max_length if config.pad_to_max_length else None

        # weights that several sessions share (the default bundle: its word embeddings), loaded once
        self.shared_weights = (load_shared_initializers(bundle.file("shared_weights"))
                               if bundle.has_file("shared_weights") and config.variant != "fp32" else {})

        def runner(model_file: Path, intra_op_threads: int = threads) -> OnnxRunner:
            return OnnxRunner(model_file, bundle.input_names, bundle.output_name, self.tokenizer.pad_id,
                              intra_op_threads, pad_to, self.shared_weights)

        self.runners = [runner(bundle.model_file(config.variant)) for _ in range(sessions)]
        solo_threads = config.resolved_solo_threads()
        self.solo_runner = runner(bundle.model_file(config.variant), solo_threads) if solo_threads else None
        self.executor = _executor(self.runners, config, observer, self.solo_runner)
        # A bundle may carry a more precise (slower) encoder for zero-shot hypotheses: an error in a label's
        # embedding shifts that label's score for every text, and hypotheses are few and cached, so
        # precision there is cheap. One session: after warm-up it only sees labels it has not seen.
        self.hypothesis_runners = ([runner(bundle.file("hypothesis_model"))]
                                   if bundle.has_file("hypothesis_model") and config.variant != "fp32" else [])
        self.hypothesis_executor = (_executor(self.hypothesis_runners, config, observer, None)
                                    if self.hypothesis_runners else self.executor)
        self.cache: LruCache[Row] = LruCache(config.cache_size)
        self.quantization = "none" if config.variant == "fp32" else bundle.quantization

    def all_runners(self) -> list[OnnxRunner]:
        """Every session of this bundle (what warm-up runs)."""
        solo = [self.solo_runner] if self.solo_runner is not None else []
        return [*self.runners, *solo, *self.hypothesis_runners]

    def rows(self, texts: Sequence[str], pairs: Sequence[str] | None, *, strict: bool, deadline: float | None,
             token: fx.CancelToken | None, names: Sequence[str], prefix: str | None = None,
             hypotheses: bool = False) -> list[Future]:
        """Futures of (Row, Timing) for each input, from the cache or through tokenizer and executor
        (the hypothesis executor for zero-shot hypotheses)."""
        keys = [(text, pairs[i] if pairs is not None else None, prefix, hypotheses) for i, text in enumerate(texts)]
        out: list[Future | None] = [None] * len(texts)
        misses = []
        for i, key in enumerate(keys):
            row = self.cache.get(key)
            if row is None:
                misses.append(i)
            else:
                out[i] = self._checked(row, Timing(cache_hits=1), strict, names[i])
        if misses:
            started = time.monotonic()
            encoded = self.tokenizer.encode_batch([texts[i] for i in misses],
                                                  [pairs[i] for i in misses] if pairs is not None else None, prefix)
            share = int((time.monotonic() - started) * 1e6 / len(misses))
            executor = self.hypothesis_executor if hypotheses else self.executor
            for i, enc in zip(misses, encoded):
                out[i] = self._submit(executor, enc, keys[i], share, strict, deadline, token, names[i])
        return out  # type: ignore[return-value]

    def _checked(self, row: Row, timing: Timing, strict: bool, name: str) -> Future:
        """A resolved future of (row, timing), or of the strict-mode error."""
        if strict and row.truncated:
            return fx.failed(self._too_long(name))
        return fx.resolved((row, timing))

    def _too_long(self, name: str) -> InvalidInput:
        return InvalidInput(f"{name} is longer than the model's {self.bundle.max_length} tokens; "
                            "strict mode rejects it instead of truncating")

    def _submit(self, executor: Batcher | DirectExecutor, enc: Encoded, key: tuple, tokenize_us: int, strict: bool,
                deadline: float | None, token: fx.CancelToken | None, name: str) -> Future:
        """Queues one encoded input; caches and times its row when it returns."""
        if strict and enc.truncated:
            return fx.failed(self._too_long(name))
        try:
            queued = executor.submit(enc, deadline)
        except Exception as error:
            return fx.failed(error)
        if token is not None:
            token.track(queued)

        def finish(out: BatchOutput) -> tuple[Row, Timing]:
            row = Row(out.row, enc.truncated, enc.length)
            self.cache.put(key, row)
            return row, Timing(tokenize_us=tokenize_us, queue_us=out.queue_us, inference_us=out.inference_us,
                               batch_size=out.batch_size)

        return fx.then(queued, finish)

    def describe(self, tasks: tuple[str, ...]) -> ModelDescription:
        """This model as GetModelInfo shows it."""
        meta = self.bundle.meta
        provenance = {k: v if isinstance(v, str) else repr(v) for k, v in meta.get("provenance", {}).items()}
        metrics = {k: float(v) for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))}
        return ModelDescription(
            name=self.bundle.name, kind=self.bundle.kind, tasks=tasks,
            labels=self.bundle.labels if "sentiment" in tasks else (), max_tokens=self.bundle.max_length,
            backend=backend_name(), quantization=self.quantization,
            default_template=self.bundle.default_template if "zeroshot" in tasks else "",
            provenance=provenance, metrics=metrics)

    def close(self) -> None:
        """Finishes queued work and stops the workers."""
        self.executor.close()
        if self.hypothesis_executor is not self.executor:
            self.hypothesis_executor.close()


def _executor(runners: list[OnnxRunner], config: EngineConfig, observer: Callable[[BatchEvent], None] | None,
              solo: OnnxRunner | None) -> Batcher | DirectExecutor:
    """The dynamic batcher over these sessions, or direct execution in the lock and per-thread modes."""
    if config.mode == "batched":
        return Batcher(runners, max_batch_size=config.max_batch_size, max_batch_tokens=config.max_batch_tokens,
                       max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue,
                       overhead_tokens=config.overhead_tokens, observer=observer, solo=solo)
    return DirectExecutor(runners, observer=observer)


class Engine:
    """Serves sentiment and zero-shot from one or two bundles; thread-safe."""

    def __init__(self, models: Sequence[LoadedModel], config: EngineConfig):
        self.config = config
        self.limits = config.limits
        self.models = list(models)
        # The last bundle named that serves a task serves it: a zero-shot bundle named after the default
        # embedding bundle takes zero-shot over, and the embedding bundle keeps sentiment.
        self._sentiment = next((m for m in reversed(self.models) if "sentiment" in m.bundle.tasks), None)
        self._zeroshot = next((m for m in reversed(self.models) if "zeroshot" in m.bundle.tasks), None)
        if self._sentiment is None and self._zeroshot is None:
            raise ValueError("no loaded bundle serves sentiment or zero-shot")
        embedding = self._sentiment is not None and self._sentiment.bundle.kind == "embedding"
        self._head = DenseHead.load(self._sentiment.bundle.file("head")) if embedding else None
        # optional character n-gram logits, added to the head's (the default bundle's recipe trains one)
        self._ngrams = (CharNgramHead.load(self._sentiment.bundle.file("ngram_head"))
                        if embedding and self._sentiment.bundle.has_file("ngram_head") else None)
        self._hypotheses: LruCache[Row] = LruCache(4096)
        # few-shot prototypes per (bundle, template, label, digest of its example texts): a repeated label set
        # costs no model work, and user traffic in the row cache never evicts them
        self._prototypes: LruCache[Prototype] = LruCache(4096)
        self._ready = threading.Event()
        self._closed = False

    @classmethod
    def load(cls, bundle_paths: Sequence[Path | str], config: EngineConfig = EngineConfig(),
             observer: Callable[[BatchEvent], None] | None = None) -> "Engine":
        """Loads bundles (a path named twice is loaded once); when two serve a task, the last one serves it."""
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
        unique = list(dict.fromkeys(Path(p).resolve() for p in bundle_paths))
        return cls([LoadedModel(load_bundle(p), config, observer) for p in unique], config)

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True after warm-up and before close."""
        return self._ready.is_set() and not self._closed

    def warm_up(self) -> float:
        """Runs every session once at each shape of `warmup_shapes`, so the first callers pay no allocation;
        returns the seconds it took."""
        started = time.monotonic()
        for model in self.models:
            pair = "好" if model.bundle.kind == "nli" else None
            for size, length in warmup_shapes(self.config.max_batch_size, self.config.max_batch_tokens,
                                              model.bundle.max_length):
                text = "好" * max(1, length - 2)  # truncated to max_length by the tokenizer
                encoded = model.tokenizer.encode_batch([text] * size, [pair] * size if pair else None)
                for runner in model.all_runners():
                    runner.run(encoded)
        self._ready.set()
        return time.monotonic() - started

    def start_cold(self) -> None:
        """Admits work without a warm-up: for bulk jobs, whose first batches pay the sessions' first-run
        allocations instead of a warm-up that scores nothing (several seconds of one core)."""
        self._ready.set()

    def close(self) -> None:
        """Finishes queued work and releases the sessions."""
        self._closed = True
        for model in self.models:
            model.close()

    def _admit(self) -> None:
        if not self._ready.is_set():
            raise NotReady("the model is still warming up; retry shortly")
        if self._closed:
            raise NotReady(SHUTTING_DOWN)

    # -- sentiment --------------------------------------------------------------------------------------

    def submit_sentiment(self, text: str, *, strict: bool = False, deadline: float | None = None,
                         token: fx.CancelToken | None = None, name: str = "text") -> Future:
        """Future of one text's Sentiment; validation errors come back in the future too."""
        return self._sentiment_futures([text], [name], strict, deadline, token)[0]

    def submit_sentiments(self, texts: Sequence[str], *, strict: bool = False) -> list[Future]:
        """Futures of each text's Sentiment, tokenised in one call and queued together (bulk scoring: the
        batcher sees the whole set at once); a text's validation error comes back in its own future."""
        return self._sentiment_futures(texts, [f"texts[{i}]" for i in range(len(texts))], strict, None, None)

    def _sentiment_futures(self, texts: Sequence[str], names: Sequence[str], strict: bool, deadline: float | None,
                           token: fx.CancelToken | None) -> list[Future]:
        try:
            model = self._sentiment_model()
        except Exception as error:
            return [fx.failed(error) for _ in texts]
        out: list[Future | None] = [None] * len(texts)
        valid = []
        for i, text in enumerate(texts):
            try:
                check_text(text, self.limits, names[i])
                valid.append(i)
            except Exception as error:
                out[i] = fx.failed(error)
        rows = model.rows([texts[i] for i in valid], None, strict=strict, deadline=deadline, token=token,
                          names=[names[i] for i in valid])
        for i, row in zip(valid, rows):
            extra = self._ngram_logits(texts[i])  # on the caller's thread while the row is in the batcher
            out[i] = fx.then(row, lambda done, extra=extra: self._to_sentiment(done, extra))
        return out  # type: ignore[return-value]

    def predict(self, texts: Sequence[str], *, strict: bool = False, deadline: float | None = None,
                token: fx.CancelToken | None = None) -> tuple[list[Sentiment], Timing]:
        """Sentiment of each text in order, with the request's summed timing."""
        started = time.monotonic()
        model = self._sentiment_model()
        check_texts(texts, self.limits)
        rows = model.rows(texts, None, strict=strict, deadline=deadline, token=token,
                          names=[f"texts[{i}]" for i in range(len(texts))])
        extras = [self._ngram_logits(text) for text in texts]  # while the rows are in the batcher
        results = fx.wait(fx.gather(rows, lambda done: [self._to_sentiment(r, e) for r, e in zip(done, extras)]),
                          deadline)
        return results, _total(results, started)

    def _sentiment_model(self) -> LoadedModel:
        self._admit()
        if self._sentiment is None:
            raise Unsupported("no loaded model serves sentiment; start the server with a sentiment bundle")
        return self._sentiment

    def _ngram_logits(self, text: str) -> np.ndarray | None:
        return self._ngrams.logits(text) if self._ngrams is not None else None

    def _to_sentiment(self, row_timing: tuple[Row, Timing], extra: np.ndarray | None = None) -> Sentiment:
        """Applies the head (embedding bundles, plus the n-gram logits `extra`) or softmax (classifier bundles)."""
        row, timing = row_timing
        assert self._sentiment is not None
        labels = self._sentiment.bundle.labels
        logits = self._head.logits(row.values[None, :])[0] if self._head is not None else row.values
        probs = softmax(logits if extra is None else logits + extra)
        best = int(np.argmax(probs))
        return Sentiment(label=labels[best], score=float(probs[best]),
                         scores=tuple((label, float(p)) for label, p in zip(labels, probs)),
                         truncated=row.truncated, tokens=row.tokens, timing=timing)

    # -- zero-shot --------------------------------------------------------------------------------------

    def classify_zero_shot(self, texts: Sequence[str], labels: Sequence[str], *, template: str = "",
                           multi_label: bool = False, strict: bool = False, deadline: float | None = None,
                           token: fx.CancelToken | None = None,
                           examples: Sequence[tuple[str, Sequence[str]]] = ()) -> tuple[list[ZeroShot], Timing]:
        """Scores each text against the caller's labels; labels of each result sorted by score.

        `examples`: optional (label, texts) pairs, few-shot examples of some labels (embedding bundles only):
        such a label is scored against its prototype (heads.fewshot_prototype) with the few-shot calibration.
        """
        started = time.monotonic()
        self._admit()
        model = self._zeroshot
        if model is None:
            raise Unsupported("no loaded model serves zero-shot; start the server with a zero-shot bundle")
        check_texts(texts, self.limits)
        check_labels(labels, self.limits)
        template = template or model.bundle.default_template
        check_template(template)
        if examples:
            if model.bundle.kind == "nli":
                raise Unsupported(f"zero-shot is served by the NLI bundle {model.bundle.name!r}, which scores "
                                  "text/hypothesis pairs and cannot use examples; send the request without "
                                  "examples, or serve an embedding bundle for few-shot")
            check_examples(examples, labels, self.limits)
        names = [f"texts[{i}]" for i in range(len(texts))]
        if model.bundle.kind == "nli":
            scored = self._nli_scores(model, texts, labels, template, multi_label, strict, deadline, token, names)
        else:
            scored = self._cosine_scores(model, texts, labels, template, multi_label, strict, deadline, token, names,
                                         examples)
        results = fx.wait(scored, deadline)
        return results, _total(results, started)

    def _cosine_scores(self, model: LoadedModel, texts, labels, template, multi_label, strict, deadline, token,
                       names, examples=()) -> Future:
        """Embedding bundles: cosine of text and hypothesis embeddings (hypotheses cached per (template, label)),
        or, for the labels with examples, of text and prototype embeddings (cached per examples too)."""
        settings = model.bundle.zeroshot
        text_rows = model.rows(texts, None, strict=strict, deadline=deadline, token=token, names=names)
        if examples:
            return self._fewshot_scores(model, texts, labels, template, multi_label, text_rows, examples, deadline,
                                        token)
        label_rows = self._hypothesis_rows(model, labels, template, deadline, token)

        def score(done: list[tuple[Row, Timing]]) -> list[ZeroShot]:
            text_part, label_part = done[: len(texts)], done[len(texts):]
            multi_t = settings.get("multi_label_temperature")
            matrix = cosine_zero_shot(
                np.stack([r.values for r, _ in text_part]), np.stack([r.values for r, _ in label_part]),
                temperature=float(settings.get("temperature", 0.02)), multi_label=multi_label,
                multi_label_center=float(settings.get("multi_label_center", 0.82)),
                multi_label_temperature=None if multi_t is None else float(multi_t))
            return [_ranked(labels, matrix[i], row.truncated, timing) for i, (row, timing) in enumerate(text_part)]

        return fx.gather(text_rows + label_rows, score)

    def _fewshot_scores(self, model: LoadedModel, texts, labels, template, multi_label, text_rows, examples,
                        deadline, token) -> Future:
        """Embedding bundles with examples: texts against each label's prototype (its hypothesis alone when the
        label has no examples), prototypes cached per (template, label, examples)."""
        settings = model.bundle.zeroshot
        center = float(settings.get("multi_label_center", 0.82))
        prototype_rows = self._prototype_rows(model, labels, template, examples, center, deadline, token)
        temperature = self._fewshot(settings, "fewshot_temperature")
        multi_t = self._fewshot(settings, "fewshot_multi_label_temperature")

        def score(done: list) -> list[ZeroShot]:
            text_part, label_part = done[: len(texts)], done[len(texts):]
            matrix = fewshot_scores(
                np.stack([r.values for r, _ in text_part]), np.stack([p.vector for p, _ in label_part]),
                np.array([p.bias for p, _ in label_part], np.float32), temperature, multi_label, multi_t)
            return [_ranked(labels, matrix[i], row.truncated, timing) for i, (row, timing) in enumerate(text_part)]

        return fx.gather(text_rows + prototype_rows, score)

    @staticmethod
    def _fewshot(settings: dict, name: str) -> float:
        """A few-shot setting of the bundle, or its default (FEWSHOT_DEFAULTS)."""
        return float(settings.get(name, FEWSHOT_DEFAULTS[name]))

    def _prototype_rows(self, model: LoadedModel, labels, template, examples, center, deadline,
                        token) -> list[Future]:
        """Futures of (Prototype, Timing), one per label: from the cache, or built from the label's hypothesis and
        its examples' embeddings (one model pass over the distinct example texts the row cache lacks); a label
        without examples gets its hypothesis with the zero-shot center."""
        by_label = dict(examples)
        out: list[Future | None] = [None] * len(labels)
        pending = []  # (label index, cache key, example texts)
        for i, label in enumerate(labels):
            texts = by_label.get(label)
            if not texts:
                continue
            key = (model.bundle.name, template, label, _digest(texts))
            prototype = self._prototypes.get(key)
            if prototype is None:
                pending.append((i, key, list(texts)))
            else:
                out[i] = fx.resolved((prototype, Timing(cache_hits=1)))
        need = [i for i, future in enumerate(out) if future is None]  # hypotheses: pending labels and bare ones
        hypotheses = dict(zip(need, self._hypothesis_rows(model, [labels[i] for i in need], template, deadline,
                                                          token)))
        row_of: dict[str, Future] = {}
        if pending:
            distinct = list(dict.fromkeys(text for _, _, texts in pending for text in texts))
            rows = model.rows(distinct, None, strict=False, deadline=deadline, token=token,
                              names=["example"] * len(distinct))  # names only show in strict errors
            row_of = dict(zip(distinct, rows))
        settings = model.bundle.zeroshot
        k, example_center = self._fewshot(settings, "fewshot_k"), self._fewshot(settings, "fewshot_example_center")
        pending_at = {i: (key, texts) for i, key, texts in pending}
        for i in need:
            key, texts = pending_at.get(i, (None, []))
            parts = [hypotheses[i]] + [row_of[t] for t in texts]
            out[i] = fx.gather(parts, self._build_prototype(key, k, center, example_center))
        return out  # type: ignore[return-value]

    def _build_prototype(self, key: tuple | None, k: float, center: float, example_center: float):
        """(Prototype, Timing) from a hypothesis row and example rows; cached under key (None: no examples)."""
        def build(done: list[tuple[Row, Timing]]) -> tuple[Prototype, Timing]:
            (hypothesis, _), parts = done[0], done[1:]
            examples = (np.stack([r.values for r, _ in parts]) if parts
                        else np.zeros((0, len(hypothesis.values)), np.float32))
            prototype = Prototype(*fewshot_prototype(hypothesis.values, examples, k, center, example_center))
            if key is not None:
                self._prototypes.put(key, prototype)
            timing = Timing()
            for _, t in done:
                timing.add(t)
            return prototype, timing
        return build

    def _hypothesis_rows(self, model: LoadedModel, labels, template, deadline, token) -> list[Future]:
        """Hypothesis embeddings from their own cache, so user traffic never evicts them."""
        out: list[Future | None] = [None] * len(labels)
        missing = []
        for i, label in enumerate(labels):
            row = self._hypotheses.get((model.bundle.name, template, label))
            if row is None:
                missing.append(i)
            else:
                out[i] = fx.resolved((row, Timing(cache_hits=1)))
        if missing:
            hypotheses = [template.replace("{}", labels[i]) for i in missing]
            prefix = model.bundle.zeroshot.get("hypothesis_prefix")
            computed = model.rows(hypotheses, None, strict=False, deadline=deadline, token=token,
                                  names=[f"labels[{i}]" for i in missing], prefix=prefix, hypotheses=True)
            for i, future in zip(missing, computed):
                out[i] = fx.then(future, self._remember_hypothesis(model, template, labels[i]))
        return out  # type: ignore[return-value]

    def _remember_hypothesis(self, model: LoadedModel, template: str, label: str):
        def remember(row_timing: tuple[Row, Timing]) -> tuple[Row, Timing]:
            self._hypotheses.put((model.bundle.name, template, label), row_timing[0])
            return row_timing
        return remember

    def _nli_scores(self, model: LoadedModel, texts, labels, template, multi_label, strict, deadline, token,
                    names) -> Future:
        """NLI bundles: every (text, hypothesis) pair through the batcher, then ModelScope's formula."""
        hypotheses = [template.replace("{}", label) for label in labels]
        firsts = [t for t in texts for _ in labels]
        seconds = hypotheses * len(texts)
        pair_names = [n for n in names for _ in labels]
        rows = model.rows(firsts, seconds, strict=strict, deadline=deadline, token=token, names=pair_names)
        nli = model.bundle.nli

        def score(done: list[tuple[Row, Timing]]) -> list[ZeroShot]:
            logits = np.stack([r.values for r, _ in done]).reshape(len(texts), len(labels), -1)
            matrix = nli_zero_shot(logits, int(nli.get("entailment_id", 0)), int(nli.get("contradiction_id", 2)),
                                   multi_label)
            results = []
            for i in range(len(texts)):
                part = done[i * len(labels):(i + 1) * len(labels)]
                timing = Timing()
                for _, t in part:
                    timing.add(t)
                results.append(_ranked(labels, matrix[i], any(r.truncated for r, _ in part), timing))
            return results

        return fx.gather(rows, score)

    # -- info -------------------------------------------------------------------------------------------

    def describe(self) -> list[ModelDescription]:
        """Every loaded model with the tasks it serves here."""
        out = []
        for model in self.models:
            tasks = tuple(t for t, m in (("sentiment", self._sentiment), ("zeroshot", self._zeroshot)) if m is model)
            out.append(model.describe(tasks))
        return out

    @property
    def queue_depth(self) -> int:
        """Items waiting in every model's queue."""
        return sum(model.executor.queue_depth for model in self.models)

    def estimated_wait_s(self, tokens_ahead: int = 0) -> float:
        """How long new work would wait to start in the slowest of the models' queues, `tokens_ahead` being the
        work the caller knows is ahead of it (admission by time reads it)."""
        return max(model.executor.estimated_wait_s(tokens_ahead) for model in self.models)


def _digest(texts: Sequence[str]) -> bytes:
    """A 16-byte digest of example texts, in order (the prototype cache key; texts may be long)."""
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def _ranked(labels: Sequence[str], scores: np.ndarray, truncated: bool, timing: Timing) -> ZeroShot:
    """Labels with their scores, highest first (ties keep the caller's order)."""
    order = sorted(range(len(labels)), key=lambda i: -float(scores[i]))
    return ZeroShot(labels=tuple((labels[i], float(scores[i])) for i in order), truncated=truncated, timing=timing)


def _total(results: Sequence[Sentiment | ZeroShot], started: float) -> Timing:
    """The request's timing: each item's phases summed, and the wall time."""
    total = Timing()
    for result in results:
        total.add(result.timing)
    total.total_us = int((time.monotonic() - started) * 1e6)
    return total
