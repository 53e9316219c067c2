"""The live views' bookkeeping on its own (app.live.views): which pages a change can
alter, how totals move, what a diff sends, how pages are grouped into reads. No
database and no socket: pages and changes are built by hand."""

from __future__ import annotations

from typing import Any

import pytest

from app.live.views import MAX_LISTED_CHANGES, Page, ViewRegistry, diff, plan_reads
from app.users.listing import Listing


def user(id: int, username: str, *, role: str = "user", active: bool = True,
         version: int = 1) -> dict[str, Any]:
    return {"id": id, "username": username, "email": f"{username}@example.com", "role": role,
            "active": active, "version": version, "created_at": "2026-12-01T00:00:00+00:00",
            "updated_at": "2026-12-01T00:00:00+00:00"}


# Ten users u0..u9 (ids 1..10), sorted by username in pages of three:
# page 1 = u0 u1 u2, page 2 = u3 u4 u5, page 3 = u6 u7 u8, page 4 = u9.
USERS = [user(i + 1, f"u{i}") for i in range(10)]


def page_of(listing: Listing, cursor: int = 10) -> Page:
    users = USERS[listing.offset:listing.offset + listing.per_page]
    return Page(listing, room="r", cursor=cursor, total=len(USERS),
                ids=[u["id"] for u in users], rows={u["id"]: u for u in users})


def by_name(page: int, **filters: Any) -> Listing:
    return Listing(sort="username", page=page, per_page=3, **filters)


def change(cursor: int, before: dict | None, after: dict | None) -> tuple:
    """As the follower hands a change to ``absorb``: (cursor, id, before, after, payload)."""
    row = after or before
    assert row is not None
    op = "insert" if before is None else "delete" if after is None else "update"
    return (cursor, row["id"], before, after,
            {"cursor": cursor, "op": op, "id": row["id"], "row": after, "actor": "admin"})


def absorbed(pages: list[Page], *changes: tuple) -> list[Page]:
    """Register the pages, absorb the changes; the pages a re-read is due for."""
    registry = ViewRegistry()
    for n, page in enumerate(pages):
        registry.pages[page.listing] = page
        registry.by_sid[f"sid{n}"] = page
    registry.absorb(list(changes))
    return registry.stale()


# --- which pages a change can alter -------------------------------------------------------

def test_a_rename_within_the_earlier_pages_leaves_later_pages_alone():
    first, second, third = (page_of(by_name(n)) for n in (1, 2, 3))
    # u1 -> "u0a": it moves within page 1, before every user of pages 2 and 3.
    stale = absorbed([first, second, third], change(11, USERS[1], {**USERS[1], "username": "u0a"}))
    assert stale == [first]
    assert [p.total for p in (first, second, third)] == [10, 10, 10]


def test_a_user_moving_from_the_last_page_to_the_first_shifts_every_page_in_between():
    pages = [page_of(by_name(n)) for n in (1, 2, 3, 4)]
    moved = {**USERS[9], "username": "a", "version": 2}
    assert absorbed(pages, change(11, USERS[9], moved)) == pages


def test_a_change_after_a_full_page_does_not_touch_it():
    first, third = page_of(by_name(1)), page_of(by_name(3))
    # u9 (page 4) renamed to "u95": still after page 3's last user, u8.
    assert absorbed([first, third], change(11, USERS[9], {**USERS[9], "username": "u95"})) == []


def test_an_insert_shifts_the_pages_after_it_and_moves_every_total():
    first, second = page_of(by_name(1)), page_of(by_name(2))
    stale = absorbed([first, second], change(11, None, user(11, "u35")))  # between u3 and u4
    assert stale == [second]
    assert first.total == second.total == 11


def test_changes_outside_the_filter_cost_nothing_and_moves_across_it_count():
    admins = Listing(role="admin", sort="username", per_page=3)
    page = Page(admins, room="r", cursor=10, total=0, ids=[], rows={})
    assert absorbed([page], change(11, USERS[0], {**USERS[0], "email": "x@example.com"})) == []
    assert page.total == 0
    promoted = {**USERS[0], "role": "admin", "version": 2}
    assert absorbed([page], change(12, USERS[0], promoted)) == [page]
    assert page.total == 1
    page.stale = False
    assert absorbed([page], change(13, promoted, {**promoted, "role": "user"})) == [page]
    assert page.total == 0


def test_changes_a_page_already_reflects_are_skipped():
    page = page_of(by_name(1), cursor=20)
    assert absorbed([page], change(15, None, user(11, "a"))) == []
    assert page.total == 10


def test_a_page_that_is_not_full_takes_any_selected_change():
    last = page_of(by_name(4))  # u9 alone
    assert absorbed([last], change(11, USERS[0], {**USERS[0], "email": "y@example.com"})) == [last]


def test_a_change_of_a_user_on_the_page_always_alters_it():
    page = page_of(by_name(2))
    assert absorbed([page], change(11, USERS[4], {**USERS[4], "active": False})) == [page]
    assert [c["id"] for c in page.changes] == [5]
    assert "row" not in page.changes[0], "view events list changes without their rows"


# --- what a diff sends ----------------------------------------------------------------------

def test_a_diff_sends_only_new_users_and_new_versions():
    page = page_of(by_name(1))
    page.sent_total = 10
    renamed = {**USERS[1], "username": "u1b", "version": 2}
    page.changes = [{"cursor": 11, "id": 2}, {"cursor": 12, "id": 99}]
    event = diff(page, 12, 10, [USERS[0], renamed, USERS[3]])
    assert event["ids"] == [1, 2, 4] and event["cursor"] == 12 and event["total"] == 10
    assert [u["id"] for u in event["rows"]] == [2, 4]  # u1 changed, u3 new; u0 as sent
    assert event["changes"] == [{"cursor": 11, "id": 2}]  # only the page's own users
    assert page.ids == [1, 2, 4] and page.rows[2]["version"] == 2 and page.changes == []


def test_a_diff_with_nothing_visible_changed_sends_nothing():
    page = page_of(by_name(1))
    page.sent_total, page.stale = 10, True
    assert diff(page, 12, 10, USERS[:3]) is None
    assert page.cursor == 12 and not page.stale


def test_a_moved_total_alone_is_an_event_without_rows():
    page = page_of(by_name(1))
    page.sent_total = 10
    event = diff(page, 12, 11, USERS[:3])
    assert event == {"cursor": 12, "total": 11, "ids": [1, 2, 3], "rows": []}


def test_a_diff_lists_at_most_the_last_changes():
    page = page_of(by_name(1))
    page.changes = [{"cursor": 11 + n, "id": 1} for n in range(MAX_LISTED_CHANGES + 5)]
    event = diff(page, 100, 10, [{**USERS[0], "version": 9}, *USERS[1:3]])
    assert len(event["changes"]) == MAX_LISTED_CHANGES
    assert event["changes"][-1]["cursor"] == 11 + MAX_LISTED_CHANGES + 4


# --- grouping re-reads ------------------------------------------------------------------------

@pytest.mark.parametrize(("pages", "reads"), [
    # Pages of one list close together: one read from the first page's offset.
    ([by_name(1), by_name(3), by_name(2)], [(0, 9, 3)]),
    # Another sort or filter is another list.
    ([by_name(1), Listing(sort="-username", per_page=3), by_name(2, role="admin")],
     [(0, 3, 1), (0, 3, 1), (3, 3, 1)]),
    # Pages far apart are read apart.
    ([Listing(sort="username", page=1, per_page=100),
      Listing(sort="username", page=40, per_page=100)], [(0, 100, 1), (3900, 100, 1)]),
])
def test_pages_of_one_list_close_together_are_read_at_once(pages, reads):
    planned = plan_reads([Page(p, room="r", cursor=0, total=0, ids=[], rows={}) for p in pages])
    assert sorted((offset, limit, len(group)) for _, offset, limit, group in planned) == \
        sorted(reads)
