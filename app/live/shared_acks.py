"""Acknowledgements of the plain stream, shared by a crowd of subscribers.

When a process restarts, or dies and its clients move to another one, hundreds of
clients subscribe within a second, most with the same ``since`` (the last cursor their
process sent them: the same for all of them) or none. Each acknowledgement is a read of
the database as of some cursor, and any cursor will do, since the subscriber then
joins the stream from it. So subscribers asking for the same ``since`` share one read:
the one in flight when they ask, or the last one while it is as of the feed's head
(then the ack is exactly what every subscriber already in the room has been sent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Ack = tuple[dict[str, Any], int]  # the acknowledgement and its cursor


class _Read:
    """A read in flight, and what it gave (None: it failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Ack | None = None


class SharedAcks:
    """Reads of plain-stream acknowledgements, shared per ``since``; keeps at most
    ``budget`` rows and changes (one full snapshot's worth), all as of one cursor."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._lock = threading.Lock()  # no I/O under it
        self._reads: dict[int | None, _Read] = {}
        self._cursor = -1  # the kept acks' cursor
        self._kept: dict[int | None, Ack] = {}
        self._size = 0

    def get(self, since: int | None, head: int, read: Callable[[], Ack]) -> Ack:
        """The ack for ``since``: kept as of ``head``, or the read in flight for it, or
        ``read()``. A follower whose shared read failed reads on its own."""
        with self._lock:
            if self._cursor != head and self._kept:
                self._kept, self._size = {}, 0  # the stream has moved on
            if (kept := self._kept.get(since)) is not None and self._cursor == head:
                return kept
            flight = self._reads.get(since)
            leading = flight is None
            if leading:
                flight = self._reads[since] = _Read()
        if not leading:
            flight.done.wait()
            return flight.result or read()
        try:
            flight.result = read()
        finally:
            with self._lock:
                del self._reads[since]
                if flight.result is not None:
                    self._keep(since, flight.result)
            flight.done.set()
        return flight.result

    def _keep(self, since: int | None, ack: Ack) -> None:
        cursor, size = ack[1], _size(ack)
        if cursor < self._cursor or size > self.budget:
            return
        if since in self._kept:
            self._size -= _size(self._kept.pop(since))
        if cursor > self._cursor or self._size + size > self.budget:
            self._kept, self._size = {}, 0
        self._cursor = cursor
        self._kept[since] = ack
        self._size += size


def _size(ack: Ack) -> int:
    """How many rows or changes an ack holds."""
    return len(ack[0].get("rows") or ack[0].get("changes") or ())
