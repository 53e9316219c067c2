"""The ``seq`` of chat messages: 1, 2, 3... per room and per private conversation, taken
safely by concurrent writers, and given to the messages stored before migration 0008."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import create_engine, select, text

from app.chat import store
from app.extensions import db
from app.models import ChatMessage, ChatStream
from config import database_url
from tests.conftest import BOTH_DATABASES
from tests.test_chat import quick_user
from tests.test_migrations import empty_url, flask_db  # noqa: F401 - fixture

WRITERS, EACH = 6, 15


def seqs(stream: str) -> list[int]:
    return list(db.session.scalars(select(ChatMessage.seq).where(ChatMessage.stream == stream)
                                   .order_by(ChatMessage.id)))


@BOTH_DATABASES
def test_each_room_and_conversation_counts_on_its_own(app):
    alice, bob, carol = quick_user("alice"), quick_user("bob"), quick_user("carol")
    sent = [
        store.save_message(alice.id, "1", room="lobby"),
        store.save_message(bob.id, "2", room="lobby"),
        store.save_message(alice.id, "3", room="other"),
        store.save_message(alice.id, "4", recipient_id=bob.id),
        store.save_message(bob.id, "5", recipient_id=alice.id),  # the same conversation
        store.save_message(carol.id, "6", recipient_id=alice.id),
        store.save_message(bob.id, "7", room="lobby", client_id="c1"),
        store.save_message(bob.id, "7", room="lobby", client_id="c1"),  # a retry
        store.save_message(alice.id, "8", room="lobby"),
    ]
    assert [(m.to_dict()["seq"], new) for m, new in sent] == [
        (1, True), (2, True), (1, True), (1, True), (2, True), (1, True),
        (3, True), (3, False), (4, True)]
    assert [m.to_dict()["id"] for m, _ in sent] == [m.id for m, _ in sent]
    heads = dict(db.session.execute(select(ChatStream.key, ChatStream.last_seq)).all())
    assert heads == {"r:lobby": 4, "r:other": 1, f"p:{alice.id}:{bob.id}": 2,
                     f"p:{alice.id}:{carol.id}": 1}


@BOTH_DATABASES
def test_concurrent_writers_get_distinct_numbers_without_holes(app):
    users = [quick_user(f"writer{n}") for n in range(WRITERS)]
    user_ids = [u.id for u in users]
    errors: list[BaseException] = []

    def write(user_id: int) -> None:
        with app.app_context():
            try:
                for n in range(EACH):
                    store.save_message(user_id, f"m{n}", room="busy")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=write, args=(uid,)) for uid in user_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    numbers = seqs("r:busy")
    assert sorted(numbers) == list(range(1, WRITERS * EACH + 1))
    # Each writer's own messages are numbered in the order it wrote them.
    for uid in user_ids:
        mine = db.session.scalars(select(ChatMessage.seq).where(
            ChatMessage.stream == "r:busy", ChatMessage.sender_id == uid)
            .order_by(ChatMessage.id)).all()
        assert list(mine) == sorted(mine)


def test_messages_stored_before_0008_are_numbered(empty_url, tmp_path: Path):  # noqa: F811
    flask_db(empty_url, tmp_path, "upgrade", "0007")
    engine = create_engine(database_url(empty_url))
    try:
        with engine.begin() as conn:
            ids = [conn.execute(text("INSERT INTO users (username, email) VALUES (:n, :e) "
                                     "RETURNING id"), {"n": n, "e": f"{n}@example.com"})
                   .scalar_one() for n in ("ann", "ben", "cat")]
            ann, ben, cat = ids
            rows = [("lobby", ann, None), (None, ann, ben), ("lobby", ben, None),
                    (None, ben, ann), ("side", cat, None), (None, cat, ann), ("lobby", cat, None)]
            for room, sender, recipient in rows:
                conn.execute(text(
                    "INSERT INTO chat_messages (room, sender_id, recipient_id, text, created_at)"
                    " VALUES (:room, :sender, :recipient, 'x', CURRENT_TIMESTAMP)"),
                    {"room": room, "sender": sender, "recipient": recipient})
        engine.dispose()
        flask_db(empty_url, tmp_path, "upgrade")
        with engine.begin() as conn:
            got = conn.execute(text("SELECT stream, seq FROM chat_messages ORDER BY id")).all()
            assert [tuple(r) for r in got] == [
                ("r:lobby", 1), (f"p:{ann}:{ben}", 1), ("r:lobby", 2), (f"p:{ann}:{ben}", 2),
                ("r:side", 1), (f"p:{ann}:{cat}", 1), ("r:lobby", 3)]
            heads = dict(conn.execute(text("SELECT key, last_seq FROM chat_streams")).all())
            assert heads == {"r:lobby": 3, "r:side": 1, f"p:{ann}:{ben}": 2,
                             f"p:{ann}:{cat}": 1}
    finally:
        engine.dispose()
