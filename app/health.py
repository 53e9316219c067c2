"""Health checks and database outages.

``GET /healthz`` answers while the process runs; ``GET /readyz`` when the database (and
the message queue, when one is configured) answer. While the database is unreachable,
every request that needs it gets a 503 with ``Retry-After`` (JSON under /api, the site's
error page elsewhere) instead of a 500 and a traceback; the outage is logged once when
it starts and once when it ends.
"""

from __future__ import annotations

import logging
import threading

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from sqlalchemy import exc, text

from app.errors import wants_json
from app.extensions import db, socketio

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)
RETRY_AFTER = 5  # seconds


@bp.get("/healthz")
def healthz():
    """The process runs."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """The database and the message queue answer; else 503 with the reason."""
    reason = _unready()
    if reason:
        return jsonify(status="unavailable", reason=reason), 503, {"Retry-After": RETRY_AFTER}
    return {"status": "ok"}


def _unready() -> str | None:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except exc.SQLAlchemyError as error:
        db.session.rollback()
        return f"database: {type(error.orig or error).__name__}"
    if url := current_app.config["SOCKETIO_MESSAGE_QUEUE"]:
        import redis

        try:
            redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
        except redis.RedisError as error:
            return f"message queue: {type(error).__name__}"
    return None


class Outage:
    """Whether the database is down, so that an outage is logged twice, not per request."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.down = False

    def begin(self, error: Exception) -> None:
        with self._lock:
            if self.down:
                return
            self.down = True
        log.error("database unreachable (%s); answering 503 until it is back",
                  type(error).__name__)
        socketio.start_background_task(self._watch)

    def _watch(self) -> None:
        """Ask the database every second; log once it answers again."""
        while True:
            socketio.sleep(1)
            with self.app.app_context():
                try:
                    db.session.execute(text("SELECT 1"))
                except exc.SQLAlchemyError:
                    continue
                finally:
                    db.session.remove()
            with self._lock:
                self.down = False
            log.warning("database reachable again")
            return


def outage_message(error: exc.DBAPIError) -> str:
    """What a client is told when the database fails (``/readyz`` then says so too,
    unless another program merely holds SQLite's write lock)."""
    if "locked" in str(error.orig):
        return "the database is busy (another program holds its write lock); retry"
    current_app.extensions["db_outage"].begin(error)
    return "the database is unreachable; retry shortly"


def _unavailable(error: exc.DBAPIError):
    """503 for a database that cannot be reached (or, on SQLite, stays locked)."""
    db.session.rollback()
    message = outage_message(error)
    headers = {"Retry-After": str(RETRY_AFTER)}
    if request.blueprint == bp.name:  # the database failed before /readyz could ask
        return jsonify(status="unavailable", reason=f"database: {message}"), 503, headers
    if wants_json():
        return jsonify(error=message), 503, headers
    # The page must not ask the database who is logged in: render it for nobody.
    current_app.login_manager._update_request_context_with_user()
    return render_template("errors/error.html", message=message,
                           error={"code": 503, "name": "Service Unavailable"}), 503, headers


def register_outage_handler(app: Flask) -> None:
    """Answer 503 while the database cannot be reached."""
    app.extensions["db_outage"] = Outage(app)
    app.register_error_handler(exc.OperationalError, _unavailable)
    app.register_error_handler(exc.InterfaceError, _unavailable)
