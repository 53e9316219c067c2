"""Reads of the database shared by a crowd of subscribers.

When a process restarts, or dies and its clients move to another one, hundreds of
clients subscribe within a second, most of them to the same thing: the plain stream
with the same ``since`` (the last cursor their process sent them: the same for all of
them) or none, or the same view (a dashboard's first page). Each acknowledgement is a
read of the database as of some cursor, and any cursor will do, since the subscriber
then joins from it. So subscribers asking for the same thing share one read: the one in
flight when they ask (``SingleFlight``) or, for the plain stream, the last one while it
is as of the feed's head (``SharedAcks``: exactly what every subscriber already in the
room has been sent). A view's page, once read, is kept by the views themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")
Ack = tuple[dict[str, Any], int]  # a plain-stream acknowledgement and its cursor


class _Read(Generic[V]):
    """A read in flight, and what it gave (None: it failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: V | None = None


class SingleFlight(Generic[V]):
    """Callers asking for the same key while its read is in flight wait for that read
    and get its result; a follower whose shared read failed reads on its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # no I/O under it
        self._reads: dict[Hashable, _Read[V]] = {}

    def get(self, key: Hashable, read: Callable[[], V]) -> V:
        with self._lock:
            flight = self._reads.get(key)
            leading = flight is None
            if leading:
                flight = self._reads[key] = _Read()
        if not leading:
            flight.done.wait()
            return read() if flight.result is None else flight.result
        try:
            flight.result = read()
        finally:
            with self._lock:
                del self._reads[key]
            flight.done.set()
        return flight.result


class SharedAcks:
    """Plain-stream acknowledgements shared per ``since``: in flight, or kept while as
    of the feed's head; keeps at most ``budget`` rows and changes (one full snapshot's
    worth)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._flights: SingleFlight[Ack] = SingleFlight()
        self._lock = threading.Lock()
        self._cursor = -1  # the kept acks' cursor
        self._kept: dict[int | None, Ack] = {}
        self._size = 0

    def get(self, since: int | None, head: int, read: Callable[[], Ack],
            floor: int = 0) -> Ack:
        """The ack for ``since``: kept as of ``head`` (or later), or the read in flight
        for it if that is as of ``floor`` or later (a connection that followed the
        stream was sent changes up to the head: an older ack would repeat them), or
        ``read()``."""
        with self._lock:
            if self._cursor < head and self._kept:
                self._kept, self._size = {}, 0  # the stream has moved on
            if (kept := self._kept.get(since)) is not None:
                return kept  # as of the head, or ahead of it (the join catches up)
        ack = self._flights.get(since, read)
        if ack[1] < floor:
            ack = read()
        with self._lock:
            self._keep(since, ack)
        return ack

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
