"""The batcher without a network: grouping, bounds, deadlines, cancellation, failures."""
import threading
import time

import numpy as np
import pytest

from senti.model.batcher import Batcher, DirectExecutor, plan_group
from senti.model.errors import DeadlineExceeded, NotReady, Overloaded
from senti.model.types import Encoded


def enc(length: int, value: int = 1) -> Encoded:
    return Encoded(np.full(length, value, dtype=np.int64), np.zeros(length, dtype=np.int64), False)


class RecordingRunner:
    """Returns each item's first id and length as its row, and records batch shapes."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.gate = gate
        self.started = threading.Event()

    def run(self, items):
        self.started.set()
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append([item.length for item in items])
        return np.array([[item.ids[0], item.length] for item in items], dtype=np.float32)


def test_plan_group_keeps_similar_lengths_together():
    lengths = [10, 200, 12, 190, 11, 205]
    groups = plan_group(lengths, max_size=32, max_tokens=100000, overhead_tokens=48)
    as_lengths = sorted(sorted(lengths[i] for i in g) for g in groups)
    assert as_lengths == [[10, 11, 12], [190, 200, 205]]


def test_plan_group_respects_count_and_padded_tokens():
    lengths = [50] * 10
    assert [len(g) for g in plan_group(lengths, 4, 100000, 48)] == [4, 4, 2]
    # 50 tokens x 3 items = 150 > 120: two per batch.
    assert [len(g) for g in plan_group(lengths, 32, 120, 48)] == [2, 2, 2, 2, 2]
    # A single item longer than the token bound still runs alone.
    assert plan_group([500], 32, 100, 48) == [[0]]


def test_plan_group_merges_when_padding_is_cheaper_than_a_pass():
    lengths = [20, 21, 22, 23]
    assert len(plan_group(lengths, 32, 100000, overhead_tokens=48)) == 1
    assert len(plan_group(lengths, 32, 100000, overhead_tokens=0)) == 4


def test_results_match_items_and_batches_form_under_load():
    gate = threading.Event()
    runner = RecordingRunner(gate)
    batcher = Batcher([runner], max_batch_size=8)
    futures = [batcher.submit(enc(5, value=i)) for i in range(20)]
    gate.set()
    rows = [f.result(5).row for f in futures]
    assert [int(r[0]) for r in rows] == list(range(20))
    # The first item ran alone (worker idle); the others queued behind it and were batched.
    assert max(len(b) for b in runner.batches) == 8
    assert sum(len(b) for b in runner.batches) == 20
    batcher.close()


def test_idle_worker_dispatches_at_once_without_waiting():
    runner = RecordingRunner()
    batcher = Batcher([runner], max_batch_size=32, max_wait_s=0.0)
    started = time.monotonic()
    out = batcher.submit(enc(4)).result(5)
    assert out.batch_size == 1
    assert time.monotonic() - started < 1.0
    batcher.close()


def test_max_wait_fills_a_batch():
    runner = RecordingRunner()
    batcher = Batcher([runner], max_batch_size=4, max_wait_s=5.0)
    futures = [batcher.submit(enc(4)) for _ in range(4)]
    assert {f.result(5).batch_size for f in futures} == {4}
    batcher.close()


def test_full_queue_is_overloaded_and_closed_is_not_ready():
    gate = threading.Event()
    runner = RecordingRunner(gate)
    batcher = Batcher([runner], max_batch_size=1, max_queue=2)
    first = batcher.submit(enc(3))
    # Once the worker is inside the first batch the queue is empty again.
    assert runner.started.wait(5)
    batcher.submit(enc(3))
    batcher.submit(enc(3))
    with pytest.raises(Overloaded, match="queue is full"):
        batcher.submit(enc(3))
    gate.set()
    first.result(5)
    batcher.close()
    with pytest.raises(NotReady):
        batcher.submit(enc(3))


def test_expired_and_cancelled_items_are_skipped_without_inference():
    gate = threading.Event()
    runner = RecordingRunner(gate)
    batcher = Batcher([runner], max_batch_size=1)
    blocker = batcher.submit(enc(3))
    expired = batcher.submit(enc(7), deadline=time.monotonic() - 1)
    cancelled = batcher.submit(enc(9))
    assert cancelled.cancel()
    gate.set()
    blocker.result(5)
    with pytest.raises(DeadlineExceeded):
        expired.result(5)
    batcher.close()
    assert [7] not in runner.batches and [9] not in runner.batches
    assert batcher.stats.skipped_deadline == 1
    assert batcher.stats.skipped_cancelled == 1


def test_a_failing_batch_fails_every_item_and_the_worker_survives():
    class Failing:
        calls = 0

        def run(self, items):
            Failing.calls += 1
            if Failing.calls == 1:
                raise RuntimeError("boom")
            return np.zeros((len(items), 1), dtype=np.float32)

    batcher = Batcher([Failing()], max_batch_size=4)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(enc(3)).result(5)
    assert batcher.submit(enc(3)).result(5).batch_size == 1
    batcher.close()


def test_close_finishes_queued_work():
    gate = threading.Event()
    batcher = Batcher([RecordingRunner(gate)], max_batch_size=2)
    futures = [batcher.submit(enc(3)) for _ in range(5)]
    gate.set()
    batcher.close()
    assert all(f.done() and f.exception() is None for f in futures)


def test_direct_executor_runs_batch_one_and_honours_deadlines():
    runner = RecordingRunner()
    direct = DirectExecutor([runner])
    assert direct.submit(enc(4)).result().batch_size == 1
    with pytest.raises(DeadlineExceeded):
        direct.submit(enc(4), deadline=time.monotonic() - 1).result()
    assert runner.batches == [[4]]


def test_invalid_arguments_are_rejected_up_front():
    with pytest.raises(ValueError, match="at least one runner"):
        Batcher([])
    with pytest.raises(ValueError, match="max_wait_s"):
        Batcher([RecordingRunner()], max_wait_s=-1)


def test_a_lone_item_on_an_idle_batcher_runs_on_the_solo_runner():
    workers, solo = [RecordingRunner(), RecordingRunner()], RecordingRunner()
    batcher = Batcher(workers, solo=solo)
    out = batcher.submit(enc(4, value=7)).result(5)
    assert int(out.row[0]) == 7 and out.batch_size == 1
    assert solo.batches == [[4]] and workers[0].batches == workers[1].batches == []
    assert batcher.stats.solo_batches == 1 and batcher.stats.batches == 1
    batcher.close()


def test_items_queued_while_the_solo_runner_works_wait_for_it_and_go_out_batched():
    gate = threading.Event()
    workers, solo = [RecordingRunner(), RecordingRunner()], RecordingRunner(gate)
    batcher = Batcher(workers, solo=solo)
    first = batcher.submit(enc(4, value=1))
    assert solo.started.wait(5)
    later = [batcher.submit(enc(6, value=i)) for i in (2, 3, 4)]
    gate.set()
    assert [int(f.result(5).row[0]) for f in [first, *later]] == [1, 2, 3, 4]
    # no worker started beside the solo run (it would have taken item 2 alone): the three ran as one batch
    assert solo.batches == [[4]]
    assert workers[0].batches + workers[1].batches == [[6, 6, 6]]
    assert batcher.stats.solo_batches == 1 and batcher.stats.batches == 2
    batcher.close()


def test_a_failing_solo_run_fails_its_item_and_frees_the_workers():
    class Failing:
        def run(self, items):
            raise RuntimeError("boom")

    workers = [RecordingRunner()]
    batcher = Batcher(workers, solo=Failing())
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(enc(3)).result(5)
    assert batcher.stats.failed_batches == 1
    # the solo runner is free again and takes the next lone item (and fails it): nothing hangs
    with pytest.raises(RuntimeError):
        batcher.submit(enc(3)).result(5)
    batcher.close()
