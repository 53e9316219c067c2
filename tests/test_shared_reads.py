"""Plain-stream acknowledgements shared by subscribers arriving while one is being read
(app/live/shared_reads.py), with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from app.live import shared_reads
from app.live.shared_reads import SharedAcks, SingleFlight

FOLLOWERS = 4


class CountedEvent(threading.Event):
    """An Event that counts the threads waiting for it."""

    waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        CountedEvent.waiting += 1
        return super().wait(timeout)


@pytest.fixture
def counted(monkeypatch):
    class Read(shared_reads._Read):
        def __init__(self) -> None:
            super().__init__()
            self.done = CountedEvent()

    CountedEvent.waiting = 0
    monkeypatch.setattr(shared_reads, "_Read", Read)


def crowd(acks: SharedAcks, leader_read, follower_read) -> tuple[list, list]:
    """The leader asks first and reads until released; the followers ask meanwhile
    (with a head behind the leader's cursor: nothing kept can answer them)."""
    results: list = []
    errors: list = []

    def ask(read) -> None:
        try:
            results.append(acks.get(None, 6, read))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    reading, release = threading.Event(), threading.Event()

    def leading():
        reading.set()
        release.wait(10)
        return leader_read()

    threads = [threading.Thread(target=ask, args=(leading,))]
    threads[0].start()
    assert reading.wait(10)
    threads += [threading.Thread(target=ask, args=(follower_read,)) for _ in range(FOLLOWERS)]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while CountedEvent.waiting < FOLLOWERS:
        assert time.monotonic() < deadline, "the followers did not wait for the read"
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    return results, errors


def test_subscribers_asking_during_a_read_get_its_ack(counted):
    ack = ({"cursor": 7, "rows": [{"id": 1}]}, 7)
    extra = []
    results, errors = crowd(SharedAcks(budget=10), lambda: ack,
                            lambda: extra.append(1) or ({"cursor": 8, "rows": []}, 8))
    assert not errors and not extra
    assert results == [ack] * (FOLLOWERS + 1)


def test_when_the_shared_read_fails_each_follower_reads_its_own(counted):
    def failing():
        raise RuntimeError("the database went away")

    own = ({"cursor": 8, "rows": []}, 8)
    results, errors = crowd(SharedAcks(budget=10), failing, lambda: own)
    assert [str(e) for e in errors] == ["the database went away"]
    assert results == [own] * FOLLOWERS


def test_only_acks_as_of_the_head_are_reused_and_within_the_budget():
    acks = SharedAcks(budget=3)
    reads: list[int] = []

    def read(cursor: int, rows: int):
        return lambda: reads.append(cursor) or ({"cursor": cursor, "rows": [{}] * rows}, cursor)

    assert acks.get(None, 5, read(5, 2))[1] == 5
    assert acks.get(None, 5, read(5, 2))[1] == 5  # kept
    assert acks.get(None, 6, read(6, 2))[1] == 6  # the head moved: read anew
    assert acks.get(2, 6, read(6, 2))[1] == 6  # another since; over the budget with both
    assert acks.get(None, 6, read(6, 2))[1] == 6  # so the first one was dropped
    assert acks.get(3, 6, read(6, 4))[1] == 6  # too big to keep at all
    assert acks.get(3, 6, read(6, 4))[1] == 6
    assert acks.get(None, 6, read(6, 2))[1] == 6  # still kept
    assert reads == [5, 6, 6, 6, 6, 6]


def test_reads_of_different_views_are_not_shared():
    """A read of one view in flight holds up nobody asking for another."""
    flights: SingleFlight[str] = SingleFlight()
    reading, release = threading.Event(), threading.Event()

    def slow() -> str:
        reading.set()
        release.wait(10)
        return "page a"

    first = threading.Thread(target=flights.get, args=("a", slow))
    first.start()
    other: list[str] = []
    try:
        assert reading.wait(10)
        second = threading.Thread(target=lambda: other.append(flights.get("b", lambda: "b")))
        second.start()
        second.join(10)
        assert other == ["b"]  # while "a" is still being read
    finally:
        release.set()
        first.join(10)
