"""Small helpers for chaining and waiting on concurrent.futures with domain errors."""
import concurrent.futures
import threading
import time
from concurrent.futures import Future
from typing import Callable, TypeVar

from .errors import Cancelled, DeadlineExceeded

T = TypeVar("T")
U = TypeVar("U")


class CancelToken:
    """Cancels the queued work of one request when its caller goes away."""

    def __init__(self) -> None:
        self._futures: list[Future] = []
        self._cancelled = False
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._cancelled

    def track(self, future: Future) -> None:
        """Remembers a queued future; cancels it at once if the request is already cancelled."""
        with self._lock:
            if not self._cancelled:
                self._futures.append(future)
                return
        future.cancel()

    def cancel(self) -> None:
        """Cancels every tracked future that has not started running."""
        with self._lock:
            self._cancelled = True
            futures, self._futures = self._futures, []
        for future in futures:
            future.cancel()


def resolved(value: T) -> Future:
    """A future that already holds a value."""
    future: Future = Future()
    future.set_result(value)
    return future


def failed(error: BaseException) -> Future:
    """A future that already holds an error."""
    future: Future = Future()
    future.set_exception(error)
    return future


def then(source: Future, fn: Callable[[T], U]) -> Future:
    """A future of fn(source's result); errors, and cancellation as Cancelled, pass through."""
    target: Future = Future()

    def finish(done: Future) -> None:
        if done.cancelled():
            target.set_exception(Cancelled("the request was cancelled"))
            return
        error = done.exception()
        if error is not None:
            target.set_exception(error)
            return
        try:
            target.set_result(fn(done.result()))
        except BaseException as fn_error:  # the waiter must hear about it
            target.set_exception(fn_error)

    source.add_done_callback(finish)
    return target


def gather(futures: list[Future], fn: Callable[[list], U]) -> Future:
    """A future of fn(all results in order), failing with the first error as soon as it happens (so a request
    whose fifth text overflowed the queue fails at once rather than after its first four ran)."""
    target: Future = Future()
    if not futures:
        target.set_result(fn([]))
        return target
    remaining = [len(futures)]
    lock = threading.Lock()

    def finish(done: Future) -> None:
        failure = (Cancelled("the request was cancelled") if done.cancelled() else done.exception())
        with lock:
            remaining[0] -= 1
            if target.done() or (remaining[0] and failure is None):
                return
            if failure is not None:
                target.set_exception(failure)
                return
        results = [future.result() for future in futures]
        try:
            target.set_result(fn(results))
        except BaseException as fn_error:
            target.set_exception(fn_error)

    for future in futures:
        future.add_done_callback(finish)
    return target


def wait(future: Future, deadline: float | None) -> T:
    """The future's result; DeadlineExceeded when the monotonic deadline passes, Cancelled if cancelled."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.CancelledError:
        raise Cancelled("the request was cancelled") from None
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise DeadlineExceeded("the deadline passed before the result was ready") from None
