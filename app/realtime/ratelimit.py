"""Rate limits of client events: token buckets, one per connection.

``limit_events`` applies one limit to every event of every namespace (the contract's
"every client event is rate limited"); namespaces add stricter ones of their own
(``/users`` subscribes, chat messages) with the same buckets.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import socketio

from app.realtime.errors import answer_error


class TokenBucket:
    """``rate`` events per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def idle(self) -> bool:
        """Full again: forgetting it changes nothing."""
        return self.tokens + (time.monotonic() - self.stamp) * self.rate >= self.burst


class RateLimiter:
    """A ``TokenBucket`` per key (a connection); idle buckets are dropped as it goes, so
    connections that left cost nothing even if nobody calls ``forget``."""

    SWEEP_EVERY = 1000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when it has none left."""
        with self._lock:
            self._calls += 1
            if self._calls % self.SWEEP_EVERY == 0:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.idle()}
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            return bucket.take()

    def forget(self, key: str) -> None:
        """The connection is gone."""
        with self._lock:
            self._buckets.pop(key, None)

    def message(self, what: str) -> str:
        return (f"rate limit: at most {self.rate:g} {what} per second "
                f"(bursts of {self.burst}); try again shortly")


def limit_events(server: socketio.Server, limiter: RateLimiter) -> None:
    """Refuse a connection's events past ``limiter``: the answer is
    ``{"error": "rate limit ..."}`` in the acknowledgement (an ``error`` event when none
    was asked for), the handler does not run, and the connection lives on."""
    dispatch = server._handle_event_internal

    def handle_event(srv: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any):
        if limiter.allow(f"{namespace} {sid}"):
            return dispatch(srv, sid, eio_sid, data, namespace, id)
        answer_error(srv, eio_sid, namespace, id, limiter.message("events"))
        return None

    server._handle_event_internal = handle_event
