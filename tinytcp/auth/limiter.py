"""Failed logins, counted per peer address and per user name over a sliding window.

A brute-force attempt needs many failures: past ``limit`` failures within ``window``
seconds, further LOGINs for that key are refused (RATE_LIMITED) without checking the
password, until the oldest failures age out.  Memory stays bounded: expired keys are
dropped, and past ``max_keys`` the older half of the keys goes (their counts restart).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable


class FailureLimiter:
    """Timestamps of recent failures per key, on ``clock`` (the reactor's ``seconds``)."""

    def __init__(self, clock: Callable[[], float], limit: int, window: float, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, key: Hashable) -> bool:
        """Whether ``key`` has used up its failures for now."""
        times = self._recent(key, self.clock())
        return times is not None and len(times) >= self.limit

    def failed(self, key: Hashable) -> None:
        now = self.clock()
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._prune(now)
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now)

    def succeeded(self, key: Hashable) -> None:
        """A right password clears that key's failures (a user who mistyped is not punished)."""
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= self.max_keys:
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[: len(by_age) - self.max_keys // 2]:
                del self._failures[key]
