"""Dynamic micro-batching: one worker thread per session turns queued items into length-grouped batches.

Contract: `submit(encoded, deadline)` returns a `concurrent.futures.Future` that resolves to a `BatchOutput`
(the item's output row and timing) or raises a domain error. A worker that is idle dispatches at once with
whatever is queued (`max_wait_s` 0); a batch is bounded by item count and by padded tokens; items are grouped
by token length so that padding stays small; items whose caller cancelled or whose deadline passed are
dropped before they cost compute. A lone item that finds every worker idle runs on the `solo` runner (a session
with every core's threads), so low load gets the best batch-1 latency while high load keeps one-thread batches.
"""
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from .errors import DeadlineExceeded, NotReady, Overloaded
from .types import Encoded

log = logging.getLogger(__name__)

COST_WINDOW = 64  # batches: the cost estimate follows about the last second of work under load


class Runner(Protocol):
    """Anything that maps a batch of encoded items to one output row per item."""

    def run(self, items: Sequence[Encoded]) -> np.ndarray: ...


@dataclass(frozen=True)
class BatchOutput:
    """One item's output row with its queue and inference time."""

    row: np.ndarray
    queue_us: int
    inference_us: int
    batch_size: int


@dataclass
class WorkItem:
    """A queued item: its tokens, its future, and when its caller stops waiting."""

    encoded: Encoded
    deadline: float | None
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Counters an operator (and a test) can read: what ran and what was skipped."""

    batches: int = 0
    items: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    skipped_cancelled: int = 0
    skipped_deadline: int = 0
    failed_batches: int = 0
    solo_batches: int = 0


@dataclass(frozen=True)
class BatchEvent:
    """What one batch did, handed to the observer (metrics)."""

    size: int
    padded_tokens: int
    real_tokens: int
    inference_s: float
    queue_depth: int


def plan_group(lengths: Sequence[int], max_size: int, max_tokens: int, overhead_tokens: int) -> list[list[int]]:
    """Splits item indices, sorted by length, into groups bounded by count and padded tokens.

    A new group starts when adding the next (longer) item would pad the group's items by more tokens
    than the fixed cost of one more forward pass (`overhead_tokens`), so short texts are never padded
    to the length of long ones.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        length = lengths[index]
        if current:
            width = lengths[current[-1]]
            extra_padding = (length - width) * len(current)
            too_big = len(current) >= max_size or length * (len(current) + 1) > max_tokens
            if too_big or extra_padding > overhead_tokens:
                groups.append(current)
                current = []
        current.append(index)
    if current:
        groups.append(current)
    return groups


def padded_tokens(batch: Sequence[WorkItem]) -> int:
    """Tokens of a batch padded to its longest item: what its forward pass costs."""
    return len(batch) * max(item.encoded.length for item in batch)


def real_tokens(batch: Sequence[WorkItem]) -> int:
    """Tokens of a batch without padding: what it held in the queue."""
    return sum(item.encoded.length for item in batch)


class TokenCost:
    """Seconds per queued token of recent batches: the median over their tokens.

    Weighing by tokens, a lone short item (its fixed cost spread over few tokens) cannot inflate the estimate
    for a long queue that goes out in full batches. The median, not a mean, lets one batch that the machine
    stalled (a neighbour's burst, a page fault) not multiply the estimate for the backlog that the stall
    itself queued, which then drains at the usual speed; a lasting slowdown moves it within half a window.
    Real tokens, as the queue is counted: the cost of padding is in the seconds (about 20% more tokens run
    than queued on review-length texts).
    """

    def __init__(self, window: int = COST_WINDOW):
        self._recent: deque[tuple[float, int]] = deque(maxlen=window)
        self.per_token = 0.0  # 0 until a batch has been measured: nothing is refused on a guess

    def add(self, seconds: float, tokens: int) -> None:
        """Counts one finished batch (callers hold the batcher's lock)."""
        if tokens <= 0:
            return
        self._recent.append((seconds / tokens, tokens))
        ordered = sorted(self._recent)
        half, seen = sum(t for _, t in ordered) / 2, 0
        for per_token, t in ordered:
            seen += t
            if seen >= half:
                self.per_token = per_token
                return


class Batcher:
    """Queues items and runs them in length-grouped batches, one worker thread per runner."""

    def __init__(self, runners: Sequence[Runner], *, max_batch_size: int = 32, max_batch_tokens: int = 2048,
                 max_wait_s: float = 0.0, max_queue: int = 1024, overhead_tokens: int = 48,
                 observer: Callable[[BatchEvent], None] | None = None, solo: Runner | None = None):
        if not runners:
            raise ValueError("Batcher needs at least one runner")
        if max_batch_size < 1 or max_batch_tokens < 1 or max_queue < 1:
            raise ValueError("max_batch_size, max_batch_tokens and max_queue must be >= 1")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.overhead_tokens = overhead_tokens
        self.stats = BatchStats()
        self._observer = observer
        self._pending: list[WorkItem] = []
        self._pending_tokens = 0
        self._cost = TokenCost()  # what the queue costs, from the one-thread batches
        self._running_tokens = 0  # real tokens of the batches being run now
        self._cond = threading.Condition()
        self._closed = False
        self._solo = solo
        self._busy = 0  # workers running a batch
        self._solo_running = False
        self._workers = [
            threading.Thread(target=self._work, args=(runner,), name=f"senti-batcher-{i}", daemon=True)
            for i, runner in enumerate(runners)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def queue_depth(self) -> int:
        """Items waiting for a worker."""
        return len(self._pending)

    def estimated_wait_s(self, tokens_ahead: int = 0) -> float:
        """How long an item queued now would wait for a worker: the work ahead of it at the measured cost per
        queued token, shared by the workers (0 before the first batch has been measured). The work ahead is
        the queued tokens, or `tokens_ahead` less what is running when the caller knows of more (calls
        admitted but not yet queued), plus half of what is running (on average, half of it is done)."""
        per_token = self._cost.per_token
        if not per_token:
            return 0.0
        running = self._running_tokens
        ahead = max(self._pending_tokens, tokens_ahead - running) + running / 2
        return ahead * per_token / len(self._workers)

    def submit(self, encoded: Encoded, deadline: float | None = None) -> Future:
        """Queues one item; raises Overloaded when the queue is full and NotReady once closed."""
        item = WorkItem(encoded, deadline)
        with self._cond:
            if self._closed:
                raise NotReady("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise Overloaded(f"the batch queue is full ({self.max_queue} items); retry with backoff")
            self._pending.append(item)
            self._pending_tokens += encoded.length
            self._cond.notify()
        return item.future

    def close(self, timeout: float | None = None) -> None:
        """Stops taking items, lets the workers finish what is queued, and joins them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def _work(self, runner: Runner) -> None:
        """Worker loop: take the next batch, drop dead items, run (alone on the solo runner), resolve futures."""
        while True:
            taken = self._next_batch()
            if taken is None:
                return
            batch, solo = taken
            try:
                live = self._drop_dead(batch)
                if live:
                    self._run(self._solo if solo else runner, live, solo)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._running_tokens -= real_tokens(batch)
                    if solo:
                        self._solo_running = False
                        self._cond.notify_all()  # the other workers waited for the cores

    def _next_batch(self) -> tuple[list[WorkItem], bool] | None:
        """Blocks until items are queued; returns the group holding the oldest item and whether it runs on the
        solo runner, or None when closed.

        A worker never starts while the solo runner holds every core: the items queued meanwhile wait for it
        and then go out in fuller batches, instead of running three threads on two cores.
        """
        with self._cond:
            while (not self._pending or self._solo_running) and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            if self.max_wait_s > 0:
                self._wait_for_more()
            # Plan over a bounded window of the oldest items: cheap, and nothing waits forever.
            window = self._pending[: 4 * self.max_batch_size]
            groups = plan_group([item.encoded.length for item in window], self.max_batch_size,
                                self.max_batch_tokens, self.overhead_tokens)
            chosen = next(group for group in groups if 0 in group)
            batch = [window[i] for i in sorted(chosen)]
            taken = set(map(id, batch))
            self._pending = [item for item in self._pending if id(item) not in taken]
            real = real_tokens(batch)
            self._pending_tokens -= real
            self._running_tokens += real
            # alone and nobody else working: the whole machine is this item's
            self._solo_running = (self._solo is not None and len(batch) == 1 and not self._pending
                                  and self._busy == 0)
            self._busy += 1
            return batch, self._solo_running

    def _wait_for_more(self) -> None:
        """Waits (lock held by the condition) until a batch is full or the oldest item waited max_wait_s."""
        until = self._pending[0].enqueued + self.max_wait_s
        while len(self._pending) < self.max_batch_size and not self._closed:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _drop_dead(self, batch: list[WorkItem]) -> list[WorkItem]:
        """Skips items whose caller cancelled or whose deadline passed; marks the rest running."""
        now = time.monotonic()
        live, expired, cancelled = [], [], 0
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                cancelled += 1
            elif item.deadline is not None and now >= item.deadline:
                expired.append(item)
            else:
                live.append(item)
        with self._cond:
            self.stats.skipped_cancelled += cancelled
            self.stats.skipped_deadline += len(expired)
        for item in expired:
            item.future.set_exception(DeadlineExceeded("the deadline passed while the request was queued"))
        return live

    def _run(self, runner: Runner, batch: list[WorkItem], solo: bool = False) -> None:
        """Runs one batch and resolves each item's future with its row, or every future with the error."""
        started = time.monotonic()
        try:
            rows = runner.run([item.encoded for item in batch])
        except Exception as error:  # every caller of this batch must hear about it
            log.exception("batch of %d failed", len(batch))
            with self._cond:
                self.stats.failed_batches += 1
            for item in batch:
                item.future.set_exception(error)
            return
        finished = time.monotonic()
        inference_us = int((finished - started) * 1e6)
        padded, real = padded_tokens(batch), real_tokens(batch)
        with self._cond:  # workers update the counters concurrently
            if not solo:  # the queue's cost is what one-thread batches take
                self._cost.add(finished - started, real)
            self.stats.solo_batches += solo
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.padded_tokens += padded
            self.stats.real_tokens += real
        for item, row in zip(batch, rows):
            item.future.set_result(BatchOutput(row, int((started - item.enqueued) * 1e6), inference_us, len(batch)))
        if self._observer is not None:
            self._observer(BatchEvent(len(batch), padded, real, finished - started, self.queue_depth))


class DirectExecutor:
    """Runs each item at once in the caller's thread on a session borrowed from a pool (batch 1).

    With one runner this is the reference design (one session behind a lock); with several it is
    `per-thread` mode: each concurrently serving thread has a session of its own.
    """

    def __init__(self, runners: Sequence[Runner], observer: Callable[[BatchEvent], None] | None = None):
        self.stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._pool: queue.Queue[Runner] = queue.Queue()
        for runner in runners:
            self._pool.put(runner)
        self._observer = observer
        self._closed = False

    @property
    def queue_depth(self) -> int:
        """Direct execution keeps no queue of its own."""
        return 0

    def estimated_wait_s(self, tokens_ahead: int = 0) -> float:
        """No queue of its own to estimate: callers wait for a session in the thread pool."""
        return 0.0

    def submit(self, encoded: Encoded, deadline: float | None = None) -> Future:
        """Runs the item now (waiting for a free session) and returns its resolved future."""
        if self._closed:
            raise NotReady("the server is shutting down")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        enqueued = time.monotonic()
        runner = self._pool.get()
        try:
            started = time.monotonic()
            if deadline is not None and started >= deadline:
                with self._stats_lock:
                    self.stats.skipped_deadline += 1
                future.set_exception(DeadlineExceeded("the deadline passed while the request was queued"))
                return future
            row = runner.run([encoded])[0]
        except Exception as error:
            log.exception("direct run failed")
            with self._stats_lock:
                self.stats.failed_batches += 1
            future.set_exception(error)
            return future
        finally:
            self._pool.put(runner)
        finished = time.monotonic()
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.items += 1
            self.stats.padded_tokens += encoded.length
            self.stats.real_tokens += encoded.length
        future.set_result(BatchOutput(row, int((started - enqueued) * 1e6), int((finished - started) * 1e6), 1))
        if self._observer is not None:
            self._observer(BatchEvent(1, encoded.length, encoded.length, finished - started, 0))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stops taking items."""
        self._closed = True
