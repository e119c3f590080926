"""Per-client token-bucket rate limiting."""
import threading
import time
from typing import Callable


class RateLimiter:
    """Token buckets per client: `rate` requests per second, bursts up to `burst`. Thread-safe."""

    MAX_CLIENTS = 10000

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Takes one token: 0.0 when allowed, else the seconds until a token will be there."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1 - tokens) / self.rate
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_full(now)
        return wait

    def _forget_full(self, now: float) -> None:
        """Drops the buckets that have refilled (an idle client costs no memory)."""
        full_after = self.burst / self.rate
        self._buckets = {c: (t, last) for c, (t, last) in self._buckets.items() if now - last < full_after}
