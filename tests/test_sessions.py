"""Login sessions: a logout ends that session, a password change all of them, copied
cookies included; a session also ends when it expires."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import LoginSession, UserChange, utcnow
from app.users.service import update_user
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
