"""The chat page in a real browser: two users, one message each way, an XSS payload as text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.server]
XSS = "<img src=x onerror=alert(1)>"


def open_chat(page: Page, server, username: str, problems: list[str]) -> None:
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    browser_login(page, server, username)
    page.goto(f"{server.url}/chat")
    page.click("#join-form button")  # the default room, "lobby"
    expect(page.locator("#presence-room")).to_have_text("lobby")


def alice_and_bob(server, new_page, make_user, problems: list[str]) -> tuple[Page, Page]:
    """Two users, each on the chat page in the lobby."""
    pages = []
    for name in ("alice", "bob"):
        make_user(name)
        pages.append(new_page())
    for name, page in zip(("alice", "bob"), pages, strict=True):
        open_chat(page, server, name, problems)
    return pages[0], pages[1]


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def send_private(page: Page, to: str, text: str) -> None:
    page.fill("#private-to", to)
    page.fill("#private-text", text)
    page.click("#private-form button")


def test_two_users_chat_and_markup_stays_text(live_server, new_page, make_user):
    problems: list[str] = []
    alice, bob = alice_and_bob(live_server, new_page, make_user, problems)
    expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])
    expect(alice.locator("#messages .rt-note").last).to_have_text("bob joined")

    send(alice, "hello bob")
    expect(bob.locator("#messages .rt-text")).to_have_text(["hello bob"])
    send(bob, XSS)
    expect(alice.locator("#messages .rt-text").last).to_have_text(XSS)
    expect(alice.locator("#messages .rt-user").last).to_have_text("bob")

    send_private(bob, "alice", "just for you")
    expect(alice.locator("#private-log .rt-text")).to_have_text(["just for you"])

    for page in (alice, bob):
        assert page.locator("#chat img").count() == 0
    assert problems == []


def test_errors_clear_and_a_reload_keeps_rooms_and_private_talks(live_server, new_page,
                                                                  make_user):
    problems: list[str] = []
    alice, bob = alice_and_bob(live_server, new_page, make_user, problems)
    alice.fill("#room-input", "red")
    alice.click("#join-form button")
    expect(alice.locator("#room-tabs [role=tab]")).to_have_text(["lobby", "red"])

    send_private(alice, "nobody", "anyone?")
    expect(alice.locator("#chat-status")).to_have_text("unknown user 'nobody'")
    expect(alice.locator("#chat-status")).to_have_class(re.compile(r"\brt-error\b"))
    send(alice, "still here")
    expect(alice.locator("#messages .rt-text")).to_have_text(["still here"])
    expect(alice.locator("#chat-status")).not_to_have_class(re.compile(r"\brt-error\b"))

    send_private(bob, "alice", "just for you")
    expect(alice.locator("#private-log .rt-text")).to_have_text(["just for you"])
    send_private(alice, "bob", "got it")
    expect(alice.locator("#private-log .rt-text")).to_have_text(["just for you", "got it"])

    alice.reload()
    expect(alice.locator("#room-tabs [role=tab]")).to_have_text(["lobby", "red"])
    expect(alice.locator("#private-log .rt-text")).to_have_text(["just for you", "got it"])
    alice.locator("#room-tabs [role=tab]", has_text="lobby").click()
    expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])  # joined again
    send(bob, "welcome back")
    expect(alice.locator("#messages .rt-text").last).to_have_text("welcome back")
    assert problems == []


def drop_frames_containing(page: Page, marker: str) -> list[str]:
    """Route the page's Socket.IO WebSocket through the test, which drops every
    ``message`` or ``private`` event from the server that contains ``marker`` (lost on
    the way; acknowledgements still pass); the list collects what was dropped."""
    dropped: list[str] = []

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_server(message) -> None:
            event = isinstance(message, str) and message.startswith(
                ('42/chat,["message"', '42/chat,["private"'))
            if event and marker in message:
                dropped.append(message)
            else:
                ws.send(message)

        server.on_message(from_server)
        ws.on_message(server.send)

    page.route_web_socket(re.compile(r"/socket\.io/"), route)
    return dropped


def test_a_missed_message_is_noticed_by_its_seq_and_fetched(live_server, new_page,
                                                             make_user):
    problems: list[str] = []
    make_user("alice")
    make_user("bob")
    alice, bob = new_page(), new_page()
    dropped = drop_frames_containing(alice, "lost on the way")
    for name, page in (("alice", alice), ("bob", bob)):
        open_chat(page, live_server, name, problems)
    alice.wait_for_timeout(1000)  # Socket.IO moved from polling to the WebSocket
    send(bob, "first")
    expect(alice.locator("#messages .rt-text")).to_have_text(["first"])
    send(bob, "lost on the way")
    expect(bob.locator("#messages .rt-text")).to_have_text(["first", "lost on the way"])
    send(bob, "third")
    # "third" skips a seq: the page fetches the room's history and shows all, in order.
    expect(alice.locator("#messages .rt-text")).to_have_text(
        ["first", "lost on the way", "third"])
    assert len(dropped) == 1

    send_private(bob, "alice", "private one")
    expect(alice.locator("#private-log .rt-text")).to_have_text(["private one"])
    send_private(bob, "alice", "private lost on the way")
    send_private(bob, "alice", "private three")
    expect(alice.locator("#private-log .rt-text")).to_have_text(
        ["private one", "private lost on the way", "private three"])
    assert len(dropped) == 2
    assert problems == []
