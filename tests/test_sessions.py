"""Login sessions: a logout ends that session, a password change all of them, copied
cookies included; a session also ends when it expires."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, update

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import LoginSession, User, UserChange, secret_digest, utcnow
from app.users.bulk import bulk_action
from app.users.history import revert
from app.users.service import delete_user, update_user
from tests.conftest import PASSWORD, csrf_token, login


def copy_session(source: FlaskClient, target: FlaskClient) -> None:
    """What someone who copied the cookie holds."""
    cookie = source.get_cookie("session")
    target.set_cookie("session", cookie.value)


def logged_in(client: FlaskClient) -> bool:
    return client.get("/").status_code == 200


def test_a_cookie_copied_before_logout_no_longer_works(app, admin_client, db_url):
    thief = app.test_client()
    copy_session(admin_client, thief)
    assert logged_in(thief)
    changes = db.session.scalar(select(func.count()).select_from(UserChange))
    token = csrf_token(admin_client, "/")
    assert admin_client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not logged_in(thief)
    assert not logged_in(admin_client)
    # A logout is no change of the user: nothing in the log.
    assert db.session.scalar(select(func.count()).select_from(UserChange)) == changes


def log_out(client: FlaskClient) -> None:
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/")}
                       ).status_code == 302


def test_logging_out_ends_that_session_only(app, admin_client, admin):
    """The same user's other browser and API token go on."""
    laptop = login_as(app, "admin")
    token = issue_token(admin)
    log_out(admin_client)
    assert not logged_in(admin_client)
    assert logged_in(laptop)
    assert app.test_client().get("/api/users", headers={
        "Authorization": f"Bearer {token}"}).status_code == 200
    log_out(laptop)
    assert not logged_in(laptop)


def test_a_remember_me_cookie_copied_before_logout_no_longer_works(app, admin):
    browser = app.test_client()
    browser.post("/login", data={"username": "admin", "password": PASSWORD, "remember": "y",
                                 "csrf_token": csrf_token(browser, "/login")})
    remembered = browser.get_cookie("remember_token")
    assert remembered is not None

    def thief() -> FlaskClient:  # the remember-me cookie alone, as after a browser restart
        client = app.test_client()
        client.set_cookie("remember_token", remembered.value)
        return client

    assert logged_in(thief())
    log_out(browser)
    assert not logged_in(thief())


def test_a_session_ends_when_it_expires_and_a_login_clears_expired_ones(app, admin_client,
                                                                        admin):
    db.session.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert not logged_in(admin_client)
    assert login(admin_client, "admin").status_code == 302
    assert logged_in(admin_client)
    assert db.session.scalar(select(func.count()).select_from(LoginSession)) == 1


def test_a_remembered_session_lasts_longer(app, admin):
    """Without "Remember me" a login lasts PERMANENT_SESSION_LIFETIME, with it
    REMEMBER_COOKIE_DURATION (Flask's and Flask-Login's defaults: 31 and 365 days)."""
    login(app.test_client(), "admin")
    remembered = app.test_client()
    remembered.post("/login", data={"username": "admin", "password": PASSWORD, "remember": "y",
                                    "csrf_token": csrf_token(remembered, "/login")})
    rows = db.session.scalars(select(LoginSession).order_by(LoginSession.expires_at)).all()
    assert [round((r.expires_at - r.created_at) / timedelta(days=1)) for r in rows] == [31, 365]


def test_a_new_password_ends_the_users_sessions(app, bob, user_client, admin):
    other_device = app.test_client()
    assert login(other_device, "bob").status_code == 302
    update_user(bob, {"password": "a-brand-new-password"}, bob.version)
    assert not logged_in(user_client) and not logged_in(other_device)
    assert login(user_client, "bob", "a-brand-new-password").status_code == 302
    assert logged_in(user_client)


def test_changing_ones_own_password_in_the_form_keeps_one_logged_in(app, admin_client,
                                                                    admin):
    elsewhere = app.test_client()
    copy_session(admin_client, elsewhere)
    page = f"/users/{admin.id}/edit"
    response = admin_client.post(page, data={
        "csrf_token": csrf_token(admin_client, page), "username": "admin",
        "email": admin.email, "role": "admin", "active": "y",
        "password": "another-long-password", "version": str(admin.version)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert logged_in(admin_client)
    assert not logged_in(elsewhere)


def test_a_malformed_session_id_is_nobody(app, client, admin):
    with client.session_transaction() as session:
        session["_user_id"] = "1"  # an id without its session's key, or anything else
    assert not logged_in(client)
    with client.session_transaction() as session:
        session["_user_id"] = "99999999999999999999:0"
    assert not logged_in(client)


def test_a_deactivated_users_sessions_stay_ended_after_reactivation(app, bob, user_client):
    unused = app.test_client()  # a session nobody uses while bob is deactivated
    copy_session(user_client, unused)
    update_user(bob, {"active": False}, bob.version)
    assert not logged_in(user_client)
    update_user(bob, {"active": True}, bob.version)
    assert not logged_in(unused)


def login_as(app, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def session_key(client: FlaskClient) -> str:
    with client.session_transaction() as session:
        return session["_user_id"].split(":", 1)[1]


def test_sockets_of_an_ended_session_close_at_the_next_sweep(app, bob, admin, user_client,
                                                             sockets):
    """A logout elsewhere (another process: only the database says so) closes the
    sockets opened with that session; the user's other session, token sockets and other
    users' stay, until every session of the user ends."""
    from app.auth.sessions import end_session, end_sessions
    from app.auth.sockets import close_ended_sessions

    session_socket = sockets("/users", bob, auth=None, flask_test_client=user_client)
    other_session = sockets("/users", bob, auth=None, flask_test_client=login_as(app, "bob"))
    token_socket = sockets("/users", bob)
    admins = sockets("/users", admin, auth=None, flask_test_client=login_as(app, "admin"))
    assert session_socket.is_connected("/users")
    assert close_ended_sessions() == 0  # nothing ended yet
    assert session_socket.is_connected("/users")
    end_session(session_key(user_client))
    assert close_ended_sessions() == 1
    assert not session_socket.is_connected("/users")
    assert other_session.is_connected("/users") and token_socket.is_connected("/users")
    end_sessions(bob.id)
    assert close_ended_sessions() == 1
    assert not other_session.is_connected("/users")
    assert token_socket.is_connected("/users") and admins.is_connected("/users")


def api_answers(app, token: str) -> bool:
    return app.test_client().get("/api/users", headers={
        "Authorization": f"Bearer {token}"}).status_code == 200


def change_own_password(browser: FlaskClient, user: User) -> None:
    answer = browser.post("/account", data={
        "csrf_token": csrf_token(browser, "/account"), "email": user.email,
        "new_password": "another-long-password", "current_password": PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:400]


def test_a_new_password_on_the_account_page_ends_the_other_sessions_only(app, user_client,
                                                                         bob):
    other, copied = login_as(app, "bob"), app.test_client()
    copy_session(user_client, copied)
    token = issue_token(bob)
    change_own_password(user_client, bob)
    assert logged_in(user_client)
    assert not logged_in(other) and not logged_in(copied)
    assert api_answers(app, token)
    assert db.session.scalar(select(func.count()).select_from(LoginSession)) == 1


def test_log_out_everywhere_else_ends_the_other_sessions_and_tokens(app, user_client, bob):
    other, copied = login_as(app, "bob"), app.test_client()
    copy_session(user_client, copied)
    token = issue_token(bob)
    assert user_client.post("/account/revoke", data={
        "csrf_token": csrf_token(user_client, "/account")}).status_code == 302
    assert logged_in(user_client)
    assert not logged_in(other) and not logged_in(copied)
    assert not api_answers(app, token)


def test_remember_me_outlives_a_change_of_ones_own_password(app, bob):
    browser = app.test_client()
    browser.post("/login", data={"username": "bob", "password": PASSWORD, "remember": "y",
                                 "csrf_token": csrf_token(browser, "/login")})
    change_own_password(browser, bob)
    restarted = app.test_client()  # after a browser restart only this cookie is left
    restarted.set_cookie("remember_token", browser.get_cookie("remember_token").value)
    assert logged_in(restarted)


def test_a_deleted_then_restored_user_gets_no_old_session_back(app, admin, bob, user_client):
    copied = app.test_client()
    copy_session(user_client, copied)
    created = db.session.scalar(select(UserChange.cursor).where(UserChange.user_id == bob.id)
                                .order_by(UserChange.cursor))
    bob_id = bob.id
    delete_user(bob)
    assert not db.session.scalars(select(LoginSession).filter_by(user_id=bob_id)).all()
    revert(bob_id, created)
    assert db.session.get(User, bob_id) is not None
    assert not logged_in(copied) and not logged_in(user_client)


def test_a_bulk_deactivation_ends_sessions_for_good(app, admin, bob, user_client):
    bulk_action([bob.id], "deactivate")
    bulk_action([bob.id], "activate")
    assert not logged_in(user_client)


def test_deactivating_oneself_on_the_edit_page_leaves_no_session_to_come_back(
        app, admin_client, admin, make_user):
    make_user("admin2", role="admin")
    page = f"/users/{admin.id}/edit"
    answer = admin_client.post(page, data={
        "csrf_token": csrf_token(admin_client, page), "username": "admin",
        "email": admin.email, "role": "admin", "version": str(admin.version)})  # no "active"
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    assert not logged_in(admin_client)
    db.session.refresh(admin)
    update_user(admin, {"active": True}, admin.version)
    assert not logged_in(admin_client)


def test_a_login_racing_a_password_change_keeps_the_changers_session(app, bob, monkeypatch):
    """Browser B logs in with the old password while browser A changes it (committed while
    B checks the password): B's session is dead on arrival, A's new one lives on."""
    a, b = app.test_client(), app.test_client()
    check = User.check_password

    def password_changes_meanwhile(user: User, password: str) -> bool:
        right = check(user, password)
        with db.engine.begin() as conn:  # what A's password change commits meanwhile
            conn.execute(update(User.__table__).where(User.id == bob.id)
                         .values(session_epoch=User.session_epoch + 1))
            epoch = conn.scalar(select(User.session_epoch).where(User.id == bob.id))
            now = utcnow()
            conn.execute(insert(LoginSession.__table__).values(
                key_hash=secret_digest("A" * 43), user_id=bob.id, epoch=epoch, created_at=now,
                expires_at=now + timedelta(days=1)))
        return right

    with a.session_transaction() as session:
        session["_user_id"] = f"{bob.id}:{'A' * 43}"
    monkeypatch.setattr(User, "check_password", password_changes_meanwhile)
    assert login(b, "bob").status_code == 302
    monkeypatch.undo()
    assert not logged_in(b)
    assert logged_in(a)


def test_expired_sessions_are_pruned(app, admin_client, bob, user_client):
    from app.auth.sessions import prune_sessions

    db.session.execute(update(LoginSession).where(LoginSession.user_id == bob.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert prune_sessions() == 1
    assert not logged_in(user_client) and logged_in(admin_client)
