"""The live dashboard in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, browser_login
from tests.test_live_server import plain_sql

pytestmark = [pytest.mark.browser, pytest.mark.server]

XSS = "<img src=x onerror=alert(1)>"


def row(page, username: str):
    return page.locator("#users-table tbody tr", has=page.locator(
        "td[data-field=username]", has_text=re.compile(f"^{re.escape(username)}")))


def open_dashboard(new_page, server, username: str = "admin"):
    page = new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    browser_login(page, server, username)
    page.goto(f"{server.url}/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "connected")
    page.dialogs = dialogs
    return page


def test_a_user_added_in_one_page_appears_in_the_other(new_page, live_server, admin):
    watcher = open_dashboard(new_page, live_server)
    editor = open_dashboard(new_page, live_server)
    expect(watcher.locator("#viewers li", has_text="admin")).to_be_visible()
    total = int(watcher.locator("[data-counter=total]").inner_text())

    editor.goto(f"{live_server.url}/users/new")
    editor.fill("input[name=username]", "newcomer")
    editor.fill("input[name=email]", "newcomer@example.com")
    editor.fill("input[name=password]", "long-enough-pw")
    editor.click("form#create-form [type=submit]")
    expect(editor.locator(".flash")).to_be_visible()

    expect(row(watcher, "newcomer")).to_have_count(1)
    expect(row(watcher, "newcomer")).to_have_class(re.compile("changed"))
    expect(watcher.locator("[data-counter=total]")).to_have_text(str(total + 1))
    expect(watcher.locator("#activity li").first).to_contain_text("newcomer: insert by admin (ui)")
    expect(watcher.locator("#result-count")).to_have_text("2 matching users · showing 1–2")
    assert watcher.url.endswith("/")  # no reload happened: same page object, same URL


def test_usernames_pushed_live_are_shown_as_text(new_page, live_server, db_url, admin):
    page = open_dashboard(new_page, live_server)
    plain_sql(db_url, "INSERT INTO users (username, email) VALUES "
                      f"('{XSS}', 'xss@example.com')")
    cell = row(page, XSS).locator("td[data-field=username]")
    expect(cell).to_have_text(XSS)
    assert page.locator("#users-table img").count() == 0
    assert page.dialogs == []


def test_badge_shows_reconnecting_and_the_page_catches_up(new_page, live_server, db_url,
                                                          admin, make_user):
    page = open_dashboard(new_page, live_server)
    make_user("before_cut")
    expect(row(page, "before_cut")).to_have_count(1)

    live_server.stop()
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "reconnecting")
    make_user("during_cut")
    plain_sql(db_url, "UPDATE users SET role = 'admin' WHERE username = 'before_cut'")
    live_server.start()

    expect(page.locator("#live-badge")).to_have_attribute("data-state", "connected",
                                                          timeout=15_000)
    expect(row(page, "during_cut")).to_have_count(1)
    expect(row(page, "before_cut").locator("td[data-field=role]")).to_have_text("admin")
    expect(row(page, "before_cut")).to_have_count(1)  # not duplicated
    expect(page.locator("#result-count")).to_have_text("3 matching users · showing 1–3")
    expect(page.locator("#live-badge")).to_contain_text(re.compile(r"(websocket|polling)"))


def test_open_edit_form_shows_changes_and_locks_when_its_owner_is_demoted(
        new_page, live_server, db_url, admin, make_user):
    target = make_user("target")
    boss = make_user("boss", role="admin")
    page = new_page()
    browser_login(page, live_server, "boss")
    page.goto(f"{live_server.url}/users/{target.id}/edit")
    viewer = open_dashboard(new_page, live_server)
    expect(row(viewer, "target").locator(".editing")).to_contain_text("boss")

    plain_sql(db_url, f"UPDATE users SET email = 'moved@example.com' WHERE id = {target.id}")
    notice = page.locator("#live-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("email: target@example.com → moved@example.com")

    plain_sql(db_url, f"UPDATE users SET role = 'user' WHERE id = {boss.id}")
    expect(notice).to_contain_text("no longer an admin")
    expect(page.locator("#edit-form input[name=email]")).to_be_disabled()


def test_a_password_change_keeps_this_browsers_other_tabs_live(new_page, live_server,
                                                                admin, make_user):
    """A new password ends every login session, this browser's included, and the server
    closes their sockets; the tab that changed it gets a new session in the shared
    cookie. The browser's other tabs connect once more with it and go on from their
    cursor, while another browser's session stays ended."""
    dashboard = open_dashboard(new_page, live_server)
    elsewhere = open_dashboard(new_page, live_server)  # another browser: its session ends
    account = dashboard.context.new_page()
    account.goto(f"{live_server.url}/account")
    account.fill("input[name=new_password]", "a-new-long-password")
    account.fill("input[name=current_password]", PASSWORD)
    account.click("#account-form [type=submit]")
    expect(account.locator(".flash")).to_be_visible()

    expect(elsewhere.locator("#live-badge")).to_have_attribute("data-state", "offline")
    make_user("after_the_change")
    expect(row(dashboard, "after_the_change")).to_have_count(1)
    expect(dashboard.locator("#live-badge")).to_have_attribute("data-state", "connected")
    expect(row(elsewhere, "after_the_change")).to_have_count(0)
