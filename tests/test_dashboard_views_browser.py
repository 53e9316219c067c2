"""The dashboard follows a live view (search, filters, sort, page) in a real browser.

Each page is compared with what the JSON API answers for the same query and with what a
reload of the page shows, after changes made through the API, the CLI and plain SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from app.auth.tokens import issue_token
from tests.conftest import browser_login
from tests.test_live_server import plain_sql

pytestmark = [pytest.mark.browser, pytest.mark.server]

SEEDED = [f"u{n:02d}" for n in range(1, 40)]  # with the admin: 40 users, two pages of 20


@pytest.fixture
def crowd(db_url: str, admin) -> None:
    """39 users besides the admin, written with plain SQL (fast, and no passwords needed)."""
    values = ", ".join(f"('{name}', '{name}@example.com')" for name in SEEDED)
    plain_sql(db_url, f"INSERT INTO users (username, email) VALUES {values}")


class Api:
    """The JSON API with the admin's token."""

    def __init__(self, server, user) -> None:
        self.base = f"{server.url}/api"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {issue_token(user)}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.http.request(method, f"{self.base}{path}", timeout=10, **kwargs)
        assert response.status_code < 400, response.text
        return response

    def page(self, **query: Any) -> tuple[list[tuple[int, int]], int]:
        """(id, version) of the page's users, in order, and the total."""
        body = self.call("GET", "/users", params={"sort": "username", **query}).json()
        return [(u["id"], u["version"]) for u in body["items"]], body["total"]

    def user(self, username: str) -> dict[str, Any]:
        items = self.call("GET", "/users", params={"q": username, "per_page": 100}).json()
        return next(u for u in items["items"] if u["username"] == username)

    def create(self, username: str) -> dict[str, Any]:
        return self.call("POST", "/users", json={
            "username": username, "email": f"{username}@example.com",
            "password": "long-enough-pw"}).json()

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        user = self.user(name)
        return self.call("PATCH", f"/users/{user['id']}",
                         json={"version": user["version"], **fields}).json()

    def delete(self, name: str) -> None:
        self.call("DELETE", f"/users/{self.user(name)['id']}")


@pytest.fixture
def api(live_server, admin) -> Api:
    return Api(live_server, admin)


def open_dashboard(new_page: Callable[[], Page], server, path: str = "/") -> Page:
    page = new_page()
    page.errors = []  # scripts' uncaught errors: none expected
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    browser_login(page, server, "admin")
    page.goto(f"{server.url}{path}")
    expect_live(page)
    return page


def expect_live(page: Page) -> None:
    """Connected, and showing the page its subscription answered (no longer busy)."""
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "connected")
    expect(page.locator("#dashboard")).not_to_have_attribute("aria-busy", "true")


def shown(page: Page) -> list[tuple[int, int]]:
    """(id, version) of the table's rows, in order (not counting rows fading out)."""
    return [tuple(pair) for pair in page.eval_on_selector_all(
        "#users-table tbody tr[data-id]",
        "rows => rows.map(r => [Number(r.dataset.id), Number(r.dataset.version)])")]


def usernames(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#users-table tbody tr[data-id] td[data-field=username]",
        "cells => cells.map(c => c.firstChild ? c.firstChild.textContent : '')")


def result_text(total: int, page: int = 1, per_page: int = 20, count: int | None = None) -> str:
    text = f"{total} matching user{'' if total == 1 else 's'}"
    count = min(per_page, total - (page - 1) * per_page) if count is None else count
    if total and count > 0:
        first = (page - 1) * per_page + 1
        text += f" · showing {first}–{first + count - 1}"
    return text


def expect_matches_api(tab: Page, api: Api, timeout: float = 5.0, **query: Any) -> None:
    """Within `timeout`, the tab shows what the API answers: ids, versions, total."""
    deadline = time.monotonic() + timeout
    while True:
        rows, total = api.page(**query)
        if shown(tab) == rows:
            break
        if time.monotonic() > deadline:
            assert shown(tab) == rows, f"the page is not the API's {query}"
        time.sleep(0.1)
    number, per_page = int(query.get("page", 1)), int(query.get("per_page", 20))
    expect(tab.locator("#result-count")).to_have_text(result_text(total, number, per_page))


def expect_same_after_reload(page: Page) -> None:
    """A reload (the server's rendering, then a fresh subscribe) shows the same page."""
    assert page.errors == []
    before, text = shown(page), page.locator("#result-count").inner_text()
    page.reload()
    assert shown(page) == before  # as the server rendered it
    expect_live(page)
    expect(page.locator("#result-count")).to_have_text(text)
    assert shown(page) == before  # and as the new subscription's first page


# --- several views of one table ------------------------------------------------------------

def test_two_views_of_one_table_stay_exact(new_page, live_server, db_url, crowd, api):
    second = open_dashboard(new_page, live_server, "/?page=2")
    search = open_dashboard(new_page, live_server, "/?q=u1")
    expect_matches_api(second, api, page=2)
    expect_matches_api(search, api, q="u1")
    assert usernames(search) == [f"u{n}" for n in range(10, 20)]

    api.create("u105")  # on page 1: pushes u19 onto page 2, u39 off it
    api.delete("u03")  # and back again
    api.update("u25", username="u1x")  # leaves page 2 and joins the search
    # Rows changed in place (the database's trigger gives them a new version).
    plain_sql(db_url, "UPDATE users SET active = 0 WHERE username IN ('u30', 'u12')")
    live_server.flask("users", "create", "u150", "--email", "u150@example.com",
                      "--password", "long-enough-pw")

    expect_matches_api(second, api, page=2)
    expect_matches_api(search, api, q="u1")
    assert "u1x" in usernames(search) and "u25" not in usernames(second)
    expect(search.locator("tr[data-id]", has_text="u12").locator("td[data-field=active]")
           ).to_have_text("no")
    expect_same_after_reload(second)
    expect_same_after_reload(search)


def test_filters_and_descending_sort_follow_changes(new_page, live_server, db_url, crowd, api):
    path = "/?role=user&active=true&sort=-username&per_page=10&page=2"
    page = open_dashboard(new_page, live_server, path)
    query = {"role": "user", "active": "true", "sort": "-username", "per_page": 10, "page": 2}
    expect_matches_api(page, api, **query)
    plain_sql(db_url, "UPDATE users SET active = 0 WHERE username IN ('u35', 'u36')")
    api.update("u20", role="admin")
    api.create("u299")
    expect_matches_api(page, api, **query)
    expect_same_after_reload(page)


# --- the newcomer reproductions ------------------------------------------------------------

def test_a_user_inserted_before_page_two_shifts_it_as_a_reload_would(
        new_page, live_server, crowd, api):
    page = open_dashboard(new_page, live_server, "/?page=2")
    assert usernames(page) == [f"u{n}" for n in range(20, 40)]
    expect(page.locator(".pagination a", has_text="3")).to_have_count(0)

    api.create("aaron")

    expect(page.locator("#users-table tbody tr[data-id]").first).to_contain_text("u19")
    expect_matches_api(page, api, page=2)
    assert usernames(page) == [f"u{n}" for n in range(19, 39)]
    expect(page.locator("#result-count")).to_have_text("41 matching users · showing 21–40")
    # The pagination follows the total: a third page now, with a link to it.
    expect(page.locator(".pagination a", has_text="3")).to_have_attribute(
        "href", "/?page=3")
    expect(page.locator(".pagination [aria-current=page]")).to_have_text("2")
    expect_same_after_reload(page)


def test_deleting_two_users_of_page_one_keeps_it_full(new_page, live_server, crowd, api):
    page = open_dashboard(new_page, live_server)
    expect(page.locator("#result-count")).to_have_text("40 matching users · showing 1–20")

    api.delete("u05")
    api.delete("u06")

    expect(page.locator("#users-table tbody tr[data-id]", has_text="u05")).to_have_count(0)
    expect(page.locator("#users-table tbody tr[data-id]", has_text="u21")).to_have_count(1)
    expect_matches_api(page, api)
    expect(page.locator("#users-table tbody tr")).to_have_count(20)  # the faded rows are gone
    expect(page.locator("#result-count")).to_have_text("38 matching users · showing 1–20")
    expect(page.locator("[data-counter=total]")).to_have_text("38")
    expect_same_after_reload(page)


def test_the_result_range_stays_after_a_live_change(new_page, live_server, crowd, api):
    page = open_dashboard(new_page, live_server)
    text = "40 matching users · showing 1–20"
    expect(page.locator("#result-count")).to_have_text(text)

    api.update("u07", email="seven@example.com")

    changed = page.locator("#users-table tbody tr[data-id]", has_text="u07")
    expect(changed.locator("td[data-field=email]")).to_have_text("seven@example.com")
    expect(changed).to_have_class(re.compile(r"\bchanged\b"))
    expect(changed).to_have_attribute("title", "update by admin (api)")
    expect(page.locator("#result-count")).to_have_text(text)
    expect(page.locator("#activity li").first).to_have_text("u07: update by admin (api) (email)")


# --- switching views without a reload ---------------------------------------------------

def test_search_sort_and_pages_change_the_view_and_the_url_without_a_reload(
        new_page, live_server, crowd, api):
    page = open_dashboard(new_page, live_server)
    page.evaluate("window.stillTheSamePage = true")

    page.locator("input[name=q]").press_sequentially("u2", delay=60)
    expect(page).to_have_url(f"{live_server.url}/?q=u2")
    expect_matches_api(page, api, q="u2")
    assert usernames(page) == [f"u{n}" for n in range(20, 30)]
    expect(page.locator("#result-count")).to_have_text("10 matching users · showing 1–10")

    page.locator("th[data-sort-field=username] a").click()  # ascending -> descending
    expect(page).to_have_url(f"{live_server.url}/?q=u2&sort=-username")
    expect_matches_api(page, api, q="u2", sort="-username")
    expect(page.locator("th[data-sort-field=username]")).to_have_attribute(
        "aria-sort", "descending")

    page.locator("input[name=q]").fill("")
    expect(page).to_have_url(f"{live_server.url}/?sort=-username")
    page.locator("select[name=per_page]").select_option("10")
    expect(page).to_have_url(f"{live_server.url}/?sort=-username&per_page=10")
    page.locator(".pagination a", has_text="3").click()
    expect(page).to_have_url(f"{live_server.url}/?sort=-username&page=3&per_page=10")
    expect_matches_api(page, api, sort="-username", page=3, per_page=10)

    page.locator("select[name=role]").select_option("admin")
    expect(page).to_have_url(f"{live_server.url}/?role=admin&sort=-username&per_page=10")
    expect(page.locator("#result-count")).to_have_text("1 matching user · showing 1–1")
    expect(page.locator(".pagination")).to_be_hidden()

    page.go_back()  # popstate: page 3 of everyone again
    expect(page).to_have_url(f"{live_server.url}/?sort=-username&page=3&per_page=10")
    expect(page.locator("select[name=role]")).to_have_value("")
    expect_matches_api(page, api, sort="-username", page=3, per_page=10)
    for _ in range(3):
        page.go_back()
    expect(page).to_have_url(f"{live_server.url}/?q=u2&sort=-username")
    expect(page.locator("input[name=q]")).to_have_value("u2")
    expect_matches_api(page, api, q="u2", sort="-username")
    page.go_forward()
    expect(page).to_have_url(f"{live_server.url}/?sort=-username")
    expect(page.locator("input[name=q]")).to_have_value("")
    expect_matches_api(page, api, sort="-username")
    page.go_back()
    expect(page).to_have_url(f"{live_server.url}/?q=u2&sort=-username")
    expect_matches_api(page, api, q="u2", sort="-username")
    assert page.evaluate("window.stillTheSamePage") is True  # never reloaded

    api.create("u2z")  # the view the page ended on is live, too
    expect_matches_api(page, api, q="u2", sort="-username")
    assert usernames(page)[0] == "u2z"
    expect_same_after_reload(page)


def test_recent_changes_panel_and_counters_come_from_the_server(
        new_page, live_server, db_url, crowd, api):
    page = open_dashboard(new_page, live_server, "/?q=nobody-matches")
    expect(page.locator("#activity")).to_be_visible()
    expect(page.locator("#activity li")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(page.locator("#result-count")).to_have_text("0 matching users")

    # Changes outside the view still move the whole table's counters and the list.
    plain_sql(db_url, "INSERT INTO users (username, email, role, active) VALUES "
                      "('boss2', 'boss2@example.com', 'admin', 1)",
              "UPDATE users SET active = 0 WHERE username = 'u01'")
    expect(page.locator("[data-counter=total]")).to_have_text("41")
    expect(page.locator("[data-counter=active]")).to_have_text("40")
    expect(page.locator("[data-counter=admins]")).to_have_text("2")
    expect(page.locator("#activity li").first).to_have_text("u01: update by sql (active)")
    expect(page.locator("#activity li").nth(1)).to_have_text("boss2: insert by sql")
    expect(page.locator("#users-table tbody tr")).to_have_count(0)
    expect(page.locator("#result-count")).to_have_text("0 matching users")


def test_a_demoted_admin_loses_the_edit_links_at_once(new_page, live_server, db_url, crowd):
    page = new_page()
    browser_login(page, live_server, "admin")
    plain_sql(db_url, "UPDATE users SET role = 'admin' WHERE username = 'u01'")
    page.goto(f"{live_server.url}/?q=u0")
    expect_live(page)
    expect(page.locator("#users-table tbody a[data-action=edit]")).to_have_count(9)

    plain_sql(db_url, "UPDATE users SET role = 'user' WHERE username = 'admin'")
    expect(page.locator("#users-table tbody a[data-action=edit]")).to_have_count(0)
    expect(page.locator("#new-user")).to_have_count(0)
    # Rows arriving later come without the links, too.
    plain_sql(db_url, "INSERT INTO users (username, email) VALUES ('u0new', 'u0new@example.com')")
    expect(page.locator("#users-table tbody tr[data-id]", has_text="u0new")).to_have_count(1)
    expect(page.locator("#users-table tbody a")).to_have_count(0)


def test_the_change_chart_has_a_time_axis_and_shows_the_value_under_the_pointer(
        new_page, live_server, crowd, api):
    page = open_dashboard(new_page, live_server)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    chart = page.locator("#changes-chart")
    expect(chart.locator("canvas")).to_have_count(1)
    before = int(chart.get_attribute("data-last-hour") or 0)
    box_before = chart.bounding_box()

    api.update("u07", email="seven@example.com")
    api.update("u08", email="eight@example.com")
    expect(chart).to_have_attribute("data-last-hour", str(before + 2))
    # The pointer over the newest bar shows its minute (a time scale) and its count.
    plot = chart.locator(".u-over")
    area = plot.bounding_box()
    assert area is not None
    page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2)
    page.mouse.move(area["x"] + area["width"] - 1, area["y"] + area["height"] / 2, steps=5)
    values = chart.locator(".u-legend .u-value")
    expect(values.nth(0)).to_have_text(re.compile(r"^\d{1,2}:\d{2}"))
    expect(values.nth(1)).to_have_text(re.compile(r"^[1-9]\d*$"))
    assert chart.bounding_box()["height"] == box_before["height"]  # the layout stays
    assert problems == []
