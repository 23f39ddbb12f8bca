"""A small in-memory limiter: N hits per key within a sliding window, then a lockout.

Used for failed console logins (per client address and per username) and, later, for SMS codes
on the portal. State lives in one process and is lost on restart, which is acceptable for
slowing down guessing on one appliance. Single event loop: no locking.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Keys are often chosen by the client (usernames, phone numbers): bound the memory they take.
DEFAULT_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Limit:
    max_hits: int
    """Hits allowed within `window_s`; the hit that reaches this number starts the lockout."""
    window_s: float
    lockout_s: float
    backoff_s: float = 0.0
    """If set, after each hit the key waits this long, doubled for every earlier hit still in the window
    (60, 120, 240 s ...): a person retries soon, a script slows down at once."""

    def __post_init__(self) -> None:
        if self.max_hits < 1 or self.window_s <= 0 or self.lockout_s <= 0 or self.backoff_s < 0:
            raise ValueError(f"a rate limit needs max_hits >= 1 and positive durations, got {self}")


@dataclass
class _Entry:
    hits: deque[float] = field(default_factory=deque)
    locked_until: float | None = None


class RateLimiter:
    def __init__(
        self, limit: Limit, *, max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._max_keys = max_keys
        self._clock = clock
        # Least recently hit first, so that overflow forgets the coldest keys.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None if it may now."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry.locked_until is None:
            return self._backoff(entry, now)
        remaining = entry.locked_until - now
        if remaining > 0:
            return remaining
        del self._entries[key]
        return None

    def _backoff(self, entry: _Entry, now: float) -> float | None:
        if not self.limit.backoff_s:
            return None
        self._forget_old_hits(entry, now)
        if not entry.hits:
            return None
        remaining = entry.hits[-1] + self.limit.backoff_s * 2 ** (len(entry.hits) - 1) - now
        return remaining if remaining > 0 else None

    def hit(self, key: str) -> float | None:
        """Count one hit; returns the lockout in seconds if `key` is (now) locked, else None.
        A hit while `key` is locked or must still wait (backoff) is not counted: it returns the wait."""
        locked = self.retry_after(key)
        if locked is not None:
            return locked
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            self._make_room()
            entry = self._entries[key] = _Entry()
        else:
            self._entries.move_to_end(key)
        self._forget_old_hits(entry, now)
        entry.hits.append(now)
        if len(entry.hits) >= self.limit.max_hits:
            entry.hits.clear()
            entry.locked_until = now + self.limit.lockout_s
            return self.limit.lockout_s
        return None

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def _forget_old_hits(self, entry: _Entry, now: float) -> None:
        while entry.hits and entry.hits[0] <= now - self.limit.window_s:
            entry.hits.popleft()

    def _make_room(self) -> None:
        """Forget keys with nothing left to remember; failing that, the least recently hit one
        that is not locked, so that a flood of new keys cannot wash out a lockout."""
        if len(self._entries) < self._max_keys:
            return
        now = self._clock()
        unlocked: deque[str] = deque()
        for key, entry in list(self._entries.items()):
            self._forget_old_hits(entry, now)
            if entry.locked_until is not None and entry.locked_until > now:
                continue
            if entry.hits:
                unlocked.append(key)
            else:
                del self._entries[key]
        while len(self._entries) >= self._max_keys:
            if unlocked:
                del self._entries[unlocked.popleft()]
            else:
                self._entries.popitem(last=False)
