"""Per-connection rate limits of client events: a token bucket per connection and event."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Allows ``rate`` events per second per key, with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when it has none left."""
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True

    def forget(self, key: str) -> None:
        """The connection is gone."""
        with self._lock:
            self._buckets.pop(key, None)

    def message(self, what: str) -> str:
        return (f"rate limit: at most {self.rate:g} {what} per second "
                f"(bursts of {self.burst}); try again shortly")
