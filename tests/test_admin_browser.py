"""Bulk select and actions on the dashboard, the history page and undo of a delete, in
a real browser against a real server."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.conftest import browser_login


def row(page, username: str):
    return page.locator("#users-table tbody tr[data-id]", has=page.locator(
        "td[data-field=username]", has_text=re.compile(f"^{re.escape(username)}$")))


def open_dashboard(new_page, server):
    page = new_page()
    page.dialogs = []

    def accept(dialog):
        page.dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    browser_login(page, server, "admin")
    page.goto(f"{server.url}/")
    expect(page.locator("#live-badge")).to_have_attribute("data-state", "connected")
    return page


def test_bulk_select_all_then_deactivate_with_one_confirmation(new_page, live_server, admin,
                                                               make_user):
    for name in ("alice", "carol"):
        make_user(name)
    page = open_dashboard(new_page, live_server)
    expect(page.locator("#bulk-apply")).to_be_disabled()
    page.check("#select-all")
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    row(page, "admin").locator("input[data-select]").uncheck()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.select_option("#bulk-action", "deactivate")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-status")).to_have_text("Deactivate: done for 2 users.")
    assert len(page.dialogs) == 1 and "alice" in page.dialogs[0] and "carol" in page.dialogs[0]
    assert "admin" not in page.dialogs[0].split("\n\n")[1]
    for name in ("alice", "carol"):  # the live table shows it without a reload
        expect(row(page, name).locator("td[data-field=active]")).to_have_text("no")
    expect(row(page, "admin").locator("td[data-field=active]")).to_have_text("yes")

    page.check("#select-all")
    page.select_option("#bulk-action", "delete")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-status")).to_contain_text("Nothing changed")
    expect(row(page, "alice")).to_have_count(1)


def test_undo_a_delete_from_the_history_page(new_page, live_server, admin, make_user):
    make_user("alice")
    page = open_dashboard(new_page, live_server)
    watcher = open_dashboard(new_page, live_server)
    row(page, "alice").locator("[data-action=history]").click()
    expect(page.locator("h1")).to_have_text("History of alice")
    page.goto(f"{live_server.url}/")
    row(page, "alice").locator("[data-action=delete]").click()
    page.click("#delete-form [type=submit]")
    expect(row(watcher, "alice")).to_have_count(0)
    page.click(".flash a", timeout=5000)
    expect(page.locator("#deleted-badge")).to_be_visible()
    page.locator("tr[data-op=insert] button").click()
    expect(page.locator(".flash")).to_contain_text("User alice reverted")
    expect(row(watcher, "alice")).to_have_count(1)  # back, live, with the same id
    watcher.locator("#activity li a").first.click()
    expect(watcher.locator("h1")).to_have_text("History of alice")
    expect(watcher.locator("#history tbody tr").first).to_have_attribute("data-op", "insert")


def test_pages_fit_a_390px_phone(new_page, live_server, admin, make_user):
    user = make_user("a-rather-long-username-x", email="someone.with.a.long.address@example.com")
    page = open_dashboard(new_page, live_server)
    page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/", f"/users/{user.id}/edit", f"/users/{user.id}/history", "/account"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    page.goto(f"{live_server.url}/")
    edit = row(page, "a-rather-long-username-x").locator("[data-action=edit]")
    box = edit.bounding_box()
    assert box and box["x"] + box["width"] <= 390  # reachable without sideways scrolling
