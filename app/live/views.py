"""Live views: the server keeps each subscriber's page of the users list exact.

A view is a ``Listing`` (filter, sort, page). Subscribers of the same view share one
``Page``, and one Socket.IO room, so one diff is built and encoded per view, whatever
the number of subscribers. After each batch of changes the follower calls
``absorb`` with the changes (to find the pages they can affect and move the totals by
the before/after rows), then ``refresh``, which re-reads only the affected pages (pages
of one list in one query) and sends each changed page's room a ``view`` event.

Every method runs under the feed's lock (the follower holds it while it emits); the
database reads of a new subscription happen before it takes the lock.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from app.extensions import socketio
from app.realtime import fanout
from app.users.listing import Listing

NAMESPACE = "/users"
# Pages of one list are re-read by one query when they lie within this many rows.
SHARED_READ_SPAN = 2000
# At most this many changes are listed in a view event's ``changes``.
MAX_LISTED_CHANGES = 20


@dataclass
class Page:
    """One distinct view and the state its subscribers were last sent."""

    listing: Listing
    room: str
    cursor: int
    total: int
    ids: list[int]
    rows: dict[int, dict[str, Any]]
    sids: set[str] = field(default_factory=set)
    stale: bool = False  # a change may have altered it: re-read it
    recount: bool = False  # changes went by unseen: count its total again
    sent_total: int = -1  # the total its subscribers were last sent
    serial: int = 0  # events sent so far
    changes: list[dict[str, Any]] = field(default_factory=list)  # since the last event

    def state(self, cursor: int | None = None) -> dict[str, Any]:
        """The whole page as an acknowledgement or a full event shows it."""
        return {"cursor": self.cursor if cursor is None else cursor, "total": self.total,
                "ids": list(self.ids), "rows": [self.rows[i] for i in self.ids]}

    def could_change(self, user_id: int, before: tuple | None, after: tuple | None,
                     bounds: tuple[tuple, tuple] | None) -> bool:
        """Whether a change of one user can alter this page: ``before`` and ``after`` are
        the list's sort values of the user's rows (None where the filter does not select
        it), ``bounds`` those of the page's first and last users (``bounds()``)."""
        if before is None and after is None:
            return False
        if bounds is None or user_id in self.rows:
            return True
        compare = self.listing.compare_values
        first, last = bounds
        if before is not None and after is not None:
            if before == after:
                return False  # it stays where it is, on another page
            if compare(before, first) < 0 and compare(after, first) < 0:
                return False  # it moves within the pages before this one
        return any(side is not None and compare(side, last) < 0 for side in (before, after))

    def bounds(self) -> tuple[tuple, tuple] | None:
        """The sort values of the first and last users of a full page (None when it is
        not full: any selected change may then alter it)."""
        if len(self.ids) < self.listing.per_page:
            return None
        sort_value = self.listing.sort_value
        return sort_value(self.rows[self.ids[0]]), sort_value(self.rows[self.ids[-1]])


class ViewRegistry:
    """The pages followed by this process's clients, by view and by subscriber."""

    def __init__(self) -> None:
        self.pages: dict[Listing, Page] = {}
        self.by_sid: dict[str, Page] = {}
        self._rooms = itertools.count(1)

    def __len__(self) -> int:
        return len(self.pages)

    # --- subscribers -----------------------------------------------------------------------

    def add(self, sid: str, listing: Listing, read: Page, head: int) -> Page:
        """Register ``sid`` on ``listing``'s page and return the page to acknowledge.

        ``read`` is the page as read from the database as of ``read.cursor``; it is used
        only when no subscriber follows that view yet. Changes up to ``head`` went by
        before it was registered: such a page is re-read at the next refresh.
        """
        page = self.pages.get(listing)
        if page is not None and self.by_sid.get(sid) is page:
            return page  # the same view again
        self.remove(sid)
        if page is None:
            page = read
            page.room = f"view:{next(self._rooms)}"
            page.stale = page.recount = read.cursor < head
            page.sent_total = page.total
            self.pages[listing] = page
        page.sids.add(sid)
        self.by_sid[sid] = page
        return page

    def remove(self, sid: str) -> None:
        """``sid`` follows no view any more (it left, or subscribed to another one)."""
        page = self.by_sid.pop(sid, None)
        if page is None:
            return
        page.sids.discard(sid)
        socketio.server.leave_room(sid, page.room, namespace=NAMESPACE)
        if not page.sids:
            del self.pages[page.listing]

    def join(self, sid: str, page: Page, serial: int) -> None:
        """Add ``sid`` to its page's room once its ack is out; if the page was sent events
        since the ack (``serial`` then), send it the whole page first."""
        if self.by_sid.get(sid) is not page:
            return  # it subscribed again, or left, meanwhile
        if page.serial != serial:
            socketio.server.emit("view", page.state(), to=sid, namespace=NAMESPACE,
                                 ignore_queue=True)
        socketio.server.enter_room(sid, page.room, namespace=NAMESPACE)

    # --- after each batch of changes ----------------------------------------------------------

    def absorb(self, changes: list[tuple[int, int, dict | None, dict | None, dict]]) -> None:
        """Note what ``changes`` (cursor, user id, row before, row after, payload) do to
        each page: which pages they can alter, and how each list's total moves. Each
        change's sort values are worked out once per list, each page's bounds once."""
        if not self.pages:
            return  # no view followed here: nothing to note (the plain stream's hot path)
        lists: dict[tuple, list[Page]] = defaultdict(list)
        for page in self.pages.values():
            lists[page.listing.order_key].append(page)
        entries = [listed(payload) for *_, payload in changes]
        for pages in lists.values():
            listing = pages[0].listing
            bounds = {id(page): page.bounds() for page in pages}
            for (cursor, user_id, before, after, _), entry in zip(changes, entries, strict=True):
                was, now = listing.sort_values(before), listing.sort_values(after)
                if was is None and now is None:
                    continue  # neither side in this list
                delta = (now is not None) - (was is not None)
                for page in pages:
                    if cursor <= page.cursor or page.recount:
                        continue
                    page.total += delta
                    if page.could_change(user_id, was, now, bounds[id(page)]):
                        page.stale = True
                        page.changes.append(entry)

    def mark_all(self) -> None:
        """Too many changes to look at one by one (a bulk write): re-read every page."""
        for page in self.pages.values():
            page.stale = page.recount = True
            page.changes.clear()

    def stale(self) -> list[Page]:
        return [page for page in self.pages.values() if page.stale]

    def emit(self, page: Page, event: dict[str, Any]) -> None:
        page.serial += 1
        fanout.emit(socketio.server, "view", event, page.room, NAMESPACE)

    def announce_totals(self, cursor: int) -> None:
        """Send the pages whose rows stayed but whose total moved their new total."""
        for page in self.pages.values():
            if not page.stale and page.total != page.sent_total:
                page.sent_total, page.cursor = page.total, cursor
                self.emit(page, {"cursor": cursor, "total": page.total,
                                 "ids": list(page.ids), "rows": []})


def listed(change: dict[str, Any]) -> dict[str, Any]:
    """A change as a view event lists it: without its ``row`` (the page's own rows are in
    the event's ``rows``, and a client needs no other)."""
    return {key: value for key, value in change.items() if key != "row"}


def diff(page: Page, cursor: int, total: int, users: list[dict[str, Any]]) -> dict | None:
    """Bring ``page`` to ``users`` and ``total`` as of ``cursor``; the ``view`` event its
    subscribers need, or None when nothing they see changed."""
    ids = [u["id"] for u in users]
    fresh = [u for u in users
             if u["id"] not in page.rows or page.rows[u["id"]]["version"] != u["version"]]
    changes, page.changes = page.changes, []
    page.stale = page.recount = False
    page.total, page.cursor = total, cursor
    if ids == page.ids and not fresh and total == page.sent_total:
        return None
    page.ids, page.rows, page.sent_total = ids, {u["id"]: u for u in users}, total
    event: dict[str, Any] = {"cursor": cursor, "total": total, "ids": ids, "rows": fresh}
    # Only the changes of the page's users: a page that a change elsewhere shifted by a
    # row has nothing to say about who changed what (and its subscribers less to read).
    if mine := [change for change in changes if change["id"] in page.rows]:
        event["changes"] = mine[-MAX_LISTED_CHANGES:]
    return event


def plan_reads(pages: list[Page]) -> list[tuple[Listing, int, int, list[Page]]]:
    """Group pages of one list (same filter and sort) that lie close together into one
    read each: ``(listing, offset, limit, pages)``."""
    lists: dict[tuple, list[Page]] = defaultdict(list)
    for page in pages:
        lists[page.listing.order_key].append(page)
    reads = []
    for group in lists.values():
        group.sort(key=lambda p: p.listing.offset)
        batch: list[Page] = []
        for page in group:
            start = batch[0].listing.offset if batch else page.listing.offset
            end = page.listing.offset + page.listing.per_page
            if batch and end - start > SHARED_READ_SPAN:
                reads.append(_read(batch))
                batch = []
            batch.append(page)
        reads.append(_read(batch))
    return reads


def _read(batch: list[Page]) -> tuple[Listing, int, int, list[Page]]:
    start = batch[0].listing.offset
    end = max(p.listing.offset + p.listing.per_page for p in batch)
    return batch[0].listing, start, end - start, batch
