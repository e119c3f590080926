"""Adaptive client-side throttling (Google's SRE book, "Handling Overload"): a client the server keeps refusing
sheds its own excess instead of sending it, so an overloaded replica spends its CPU on work, not on refusals."""
import collections
import random
import threading
import time

import grpc


class AdaptiveThrottle:
    """Counts this client's requests and the server's accepts over the last `window_s` seconds, and refuses a new
    request locally with probability max(0, (requests - k * accepts) / (requests + 1)).

    While the server accepts everything nothing is refused (requests <= k * accepts). Once it refuses, about
    `k` times what it accepts still reaches it, so the client sees at once when it has room again. A request
    refused locally counts as a request, as in the book: the longer the overload, the more is shed.
    """

    def __init__(self, k: float = 2.0, window_s: float = 30.0, *, clock=time.monotonic, rng=random.random):
        if k < 1 or window_s <= 0:
            raise ValueError("AdaptiveThrottle needs k >= 1 and window_s > 0")
        self.k, self.window_s = k, window_s
        self._clock, self._rng = clock, rng
        self._lock = threading.Lock()
        self._buckets: collections.deque[list] = collections.deque()  # [second, requests, accepts]
        self._requests = self._accepts = 0

    def _bucket(self) -> list:
        """The current second's counters, after dropping the seconds that left the window (lock held)."""
        now = int(self._clock())
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            _, requests, accepts = self._buckets.popleft()
            self._requests -= requests
            self._accepts -= accepts
        if not self._buckets or self._buckets[-1][0] != now:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def _shed_probability(self) -> float:
        """The book's formula over the window's counts (lock held, after `_bucket`)."""
        return max(0.0, (self._requests - self.k * self._accepts) / (self._requests + 1))

    def refusal_probability(self) -> float:
        """The chance that the next request is refused locally."""
        with self._lock:
            self._bucket()
            return self._shed_probability()

    def allow(self) -> bool:
        """Counts a request; False when it must not be sent."""
        with self._lock:
            bucket = self._bucket()
            shed = self._shed_probability()
            bucket[1] += 1
            self._requests += 1
        return shed <= 0 or self._rng() >= shed

    def accepted(self) -> None:
        """Counts an answer the server did not refuse (anything but RESOURCE_EXHAUSTED)."""
        with self._lock:
            self._bucket()[2] += 1
            self._accepts += 1

    def details(self) -> str:
        """The message of a local refusal."""
        return (f"not sent: the server refused most recent calls, so the client sheds load "
                f"(adaptive throttle, k={self.k:g}, over {self.window_s:g} s); retry later or on another replica")


class LocalRefusal(grpc.RpcError, grpc.Call, grpc.Future):
    """The RESOURCE_EXHAUSTED outcome of a call the throttle did not send (sync API: an RpcError, Call and Future,
    as gRPC's own outcomes are)."""

    def __init__(self, details: str):
        super().__init__(details)
        self._details = details

    def code(self):
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self):
        return self._details

    def initial_metadata(self):
        return ()

    def trailing_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def add_callback(self, callback):
        return False

    def cancel(self):
        return False

    def cancelled(self):
        return False

    def running(self):
        return False

    def done(self):
        return True

    def result(self, timeout=None):
        raise self

    def exception(self, timeout=None):
        return self

    def traceback(self, timeout=None):
        return None

    def add_done_callback(self, fn):
        fn(self)
