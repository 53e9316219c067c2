"""The playground page in a real browser: transport, echo, rooms, ping and disconnect."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.server]


def test_playground_page_works(live_server, new_page, make_user):
    make_user("alice")
    page = new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    browser_login(page, live_server, "alice")
    page.goto(f"{live_server.url}/playground")
    expect(page.locator("#async-mode")).to_have_text("gevent")
    expect(page.locator("#transport")).to_have_text("websocket")
    expect(page.locator("#log li").first).to_have_text("Received #0: Connected")
    page.fill("#emit input[name=data]", "<b>echo</b>")
    page.click("#emit button")
    expect(page.locator("#log li").first).to_have_text("Received #1: <b>echo</b>")
    page.fill("#join input[name=room]", "red")
    page.click("#join button")
    expect(page.locator("#log li").first).to_have_text("Received #2: In rooms: red")
    expect(page.locator("#ping-pong")).to_have_text(re.compile(r"^\d+(\.\d)?$"))
    page.click("#ping button")
    expect(page.locator("#log li").first).to_have_text(re.compile(r"^Pong after \d+(\.\d)? ms$"))
    page.click("#disconnect button")
    expect(page.locator("#log li").first).to_have_text(re.compile("^Disconnected: "))
    assert problems == []


def test_after_disconnect_the_page_says_so_and_reconnects(live_server, new_page, make_user):
    make_user("alice")
    page = new_page()
    browser_login(page, live_server, "alice")
    page.goto(f"{live_server.url}/playground")
    expect(page.locator("#transport")).to_have_text("websocket")
    expect(page.locator("#reconnect")).to_be_hidden()
    page.click("#disconnect button")
    expect(page.locator("#transport")).to_have_text("disconnected")
    expect(page.locator("#disconnect")).to_be_hidden()
    page.fill("#emit input[name=data]", "anyone?")
    page.click("#emit button")
    expect(page.locator("#log li").first).to_have_text("Not connected: press Reconnect first")
    page.click("#reconnect button")
    expect(page.locator("#transport")).to_have_text("websocket")
    expect(page.locator("#log li").first).to_have_text("Received #0: Connected")
    page.fill("#emit input[name=data]", "back")
    page.click("#emit button")
    expect(page.locator("#log li").first).to_have_text("Received #1: back")
