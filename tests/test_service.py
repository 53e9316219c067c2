"""The users service under races that the pages and the API cannot set up exactly."""

import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text

from app.extensions import db
from app.models import User
from app.users.service import (
    LastAdminError,
    StaleVersionError,
    UserGoneError,
    delete_user,
    update_user,
)
from tests.conftest import BOTH_DATABASES


def other_writer(db_url: str, sql: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


@BOTH_DATABASES
def test_a_write_against_a_row_changed_meanwhile_is_a_conflict(db_url, make_user):
    bob = make_user("bob")
    loaded = bob.version
    other_writer(db_url, f"UPDATE users SET email = 'other@example.com' WHERE id = {bob.id}")
    with pytest.raises(StaleVersionError) as caught:
        update_user(bob, {"role": "admin"}, loaded)  # the session still holds the old row
    assert caught.value.current.email == "other@example.com"
    assert caught.value.current.role == "user"


@BOTH_DATABASES
def test_a_write_against_a_row_deleted_meanwhile_says_it_is_gone(db_url, make_user):
    bob = make_user("bob")
    loaded, bob_id = bob.version, bob.id
    other_writer(db_url, f"DELETE FROM users WHERE id = {bob_id}")
    with pytest.raises(UserGoneError, match=f"user {bob_id} was deleted"):
        update_user(bob, {"role": "admin"}, loaded)


@BOTH_DATABASES
def test_deleting_a_row_changed_meanwhile_deletes_the_newest_row(db_url, make_user):
    bob = make_user("bob")
    bob_id = bob.id
    _ = bob.version  # loaded: the session holds version 1
    other_writer(db_url, f"UPDATE users SET email = 'other@example.com' WHERE id = {bob_id}")
    delete_user(bob)
    assert db.session.get(User, bob_id) is None


@BOTH_DATABASES
def test_deleting_a_row_deleted_meanwhile_says_it_is_gone(db_url, make_user):
    bob = make_user("bob")
    bob_id = bob.id
    _ = bob.version
    other_writer(db_url, f"DELETE FROM users WHERE id = {bob_id}")
    with pytest.raises(UserGoneError):
        delete_user(bob)


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_admins_demoted_at_once_leave_one_admin(app, make_user):
    """Each request sees another admin before it writes; run together, they must not
    both succeed (no admin left) nor deadlock: exactly one is refused."""
    ids = [make_user(name, role="admin").id for name in ("ada", "bea")]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(user_id: int) -> None:
        with app.app_context():
            user = db.session.get(User, user_id)
            barrier.wait()
            try:
                update_user(user, {"role": "user"}, user.version)
                outcomes.append("demoted")
            except LastAdminError:
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=demote, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["demoted", "refused"]
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True))) == 1


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_a_checked_write_waiting_for_a_row_does_not_block_its_writer(app, db_url, make_user):
    """The last-admin check holds its lock while it waits for the row another program is
    changing; that program's commit (which takes the change log's lock) must go through,
    not deadlock, and the check's write then finds the row moved on."""
    ada, _ = (make_user(name, role="admin").id for name in ("ada", "bea"))
    writer = create_engine(db_url, connect_args={"options": "-c lock_timeout=5s"})
    watcher = create_engine(db_url)
    outcome: list[str] = []

    def demote() -> None:
        with app.app_context():
            user = db.session.get(User, ada)
            try:
                update_user(user, {"role": "user"}, user.version)
                outcome.append("demoted")
            except StaleVersionError:
                outcome.append("stale")
            finally:
                db.session.remove()

    thread = threading.Thread(target=demote)
    try:
        with writer.connect() as conn:
            conn.execute(text(f"UPDATE users SET email = 'ada2@example.com' WHERE id = {ada}"))
            thread.start()
            deadline = time.monotonic() + 10
            with watcher.connect() as look:  # until the demotion waits for the row
                while not look.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                    assert time.monotonic() < deadline, "the demotion never reached the row"
                    time.sleep(0.05)
            conn.commit()
        thread.join(10)
    finally:
        writer.dispose()
        watcher.dispose()
    assert outcome == ["stale"]
    assert db.session.get(User, ada).role == "admin"
