"""The in-memory rate limiter behind the login lockout (and, later, SMS codes)."""

from __future__ import annotations

import pytest

from appliance.web.ratelimit import Limit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LIMIT = Limit(max_hits=3, window_s=60, lockout_s=300)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_locks_on_the_nth_hit_and_counts_down(clock: Clock) -> None:
    rl = RateLimiter(LIMIT, clock=clock)
    assert rl.hit("k") is None and rl.hit("k") is None
    assert rl.retry_after("k") is None
    assert rl.hit("k") == 300
    clock.now += 100
    assert rl.retry_after("k") == pytest.approx(200)
    # Hits while locked do not extend the lockout.
    assert rl.hit("k") == pytest.approx(200)
    clock.now += 200
    assert rl.retry_after("k") is None
    assert rl.hit("k") is None  # a fresh start after the lockout


def test_hits_older_than_the_window_are_forgotten(clock: Clock) -> None:
    rl = RateLimiter(LIMIT, clock=clock)
    rl.hit("k")
    rl.hit("k")
    clock.now += 60
    assert rl.hit("k") is None  # the first two left the window
    assert rl.hit("k") is None
    assert rl.hit("k") == 300


def test_keys_are_independent_and_reset_forgets(clock: Clock) -> None:
    rl = RateLimiter(LIMIT, clock=clock)
    for _ in range(3):
        rl.hit("a")
    assert rl.retry_after("a") is not None and rl.retry_after("b") is None
    rl.reset("a")
    assert rl.retry_after("a") is None


def test_memory_is_bounded_and_locked_keys_outlive_idle_ones(clock: Clock) -> None:
    rl = RateLimiter(LIMIT, max_keys=3, clock=clock)
    for _ in range(3):
        rl.hit("locked")
    rl.hit("old")
    clock.now += 61  # "old" has nothing left to remember; "locked" still has 239 s to go
    rl.hit("b")
    rl.hit("c")
    assert len(rl) == 3
    assert rl.retry_after("locked") is not None
    # Full of live keys: the least recently hit unlocked one ("b") goes; a flood of new keys
    # cannot wash out a lockout.
    rl.hit("d")
    assert len(rl) == 3
    assert rl.retry_after("locked") is not None
    clock.now += 1
    assert rl.hit("b") is None and rl.hit("b") is None  # remembered, its second hit would have locked it


def test_when_every_key_is_locked_the_oldest_lockout_is_dropped(clock: Clock) -> None:
    rl = RateLimiter(LIMIT, max_keys=2, clock=clock)
    for key in ("a", "b", "c"):
        for _ in range(3):
            rl.hit(key)
    assert len(rl) == 2
    assert rl.retry_after("a") is None and rl.retry_after("b") and rl.retry_after("c")


@pytest.mark.parametrize("bad", [(0, 60, 60), (1, 0, 60), (1, 60, -1)])
def test_nonsense_limits_are_refused(bad: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Limit(*bad)


def test_backoff_doubles_between_hits_and_the_window_forgets_it(clock: Clock) -> None:
    rl = RateLimiter(Limit(max_hits=4, window_s=600, lockout_s=900, backoff_s=60), clock=clock)
    assert rl.hit("k") is None
    assert rl.retry_after("k") == pytest.approx(60)
    # A hit while it must wait is refused and not counted.
    assert rl.hit("k") == pytest.approx(60)
    clock.now += 60
    assert rl.retry_after("k") is None and rl.hit("k") is None
    assert rl.retry_after("k") == pytest.approx(120)
    clock.now += 120
    assert rl.hit("k") is None
    assert rl.retry_after("k") == pytest.approx(240)
    clock.now += 240
    assert rl.hit("k") == 900  # the fourth hit within the window: locked
    clock.now += 900
    assert rl.retry_after("k") is None and rl.hit("k") is None
    clock.now += 600  # a quiet window: the pause starts small again
    assert rl.hit("k") is None and rl.retry_after("k") == pytest.approx(60)
