"""The SDK's adaptive throttle: nothing shed while the server accepts, the excess shed while it refuses."""
import random

import pytest

from senti.client import AdaptiveThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_server_that_accepts_everything_is_never_throttled():
    throttle = AdaptiveThrottle(rng=lambda: 0.0)  # any positive probability would shed with this rng
    for _ in range(1000):
        assert throttle.allow()
        throttle.accepted()
    assert throttle.refusal_probability() == 0.0


def test_the_probability_follows_requests_and_accepts_in_the_window():
    clock = Clock()
    throttle = AdaptiveThrottle(k=2.0, window_s=30.0, clock=clock, rng=lambda: 0.99)
    for _ in range(10):
        throttle.allow()
        throttle.accepted()
    for _ in range(30):  # refused by the server: requests but no accepts
        throttle.allow()
    assert throttle.refusal_probability() == pytest.approx((40 - 2 * 10) / 41)
    clock.now += 29.5  # still inside the window
    assert throttle.refusal_probability() == pytest.approx(20 / 41)
    clock.now += 1.0  # every count has left the window
    assert throttle.refusal_probability() == 0.0


def test_under_overload_about_k_times_the_accepts_reach_the_server():
    """Callers offer five times what the server can take (one call per five offered, with a queue of 50); the
    throttle sends it about k = 2 times what it accepts, and the server still gets all it can take."""
    throttle = AdaptiveThrottle(k=2.0, rng=random.Random(0).random)
    offered, sent, accepted, room = 20000, 0, 0, 0.0
    for _ in range(offered):
        room = min(50.0, room + 0.2)
        if throttle.allow():
            sent += 1
            if room >= 1.0:
                room -= 1.0
                accepted += 1
                throttle.accepted()
    assert accepted >= 0.95 * offered / 5
    assert 1.9 * accepted <= sent <= 2.1 * accepted


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="k >= 1"):
        AdaptiveThrottle(k=0.5)
