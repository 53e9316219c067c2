"""LiveCRUD: a Flask application whose pages and tables update live."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from app.extensions import csrf, db, login_manager, migrate, socketio
from config import INSTANCE_DIR, config


def create_app(config_name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: config, extensions, blueprints, namespaces, CLI, errors."""
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    name = config_name or os.environ.get("FLASK_CONFIG") or "development"
    if (chosen := config.get(name.lower())) is None:
        raise RuntimeError(f"FLASK_CONFIG={name!r}: use one of {', '.join(config)}")
    app.config.from_object(chosen)
    if overrides:
        app.config.update(overrides)
    os.makedirs(app.instance_path, exist_ok=True)

    register_extensions(app)
    register_blueprints(app)
    register_namespaces(app)
    register_cluster(app)
    register_cli(app)
    register_error_handlers(app)
    return app


def register_extensions(app: Flask) -> None:
    from app.cluster import cluster_manager
    from app.connections import ConnectionRegistry
    from app.database import engine_options, init_database
    from app.live.capture import init_capture
    from app.loglimit import init_log_limit
    from app.models import include_name
    from app.realtime import init_realtime, safe_json
    from app.realtime.polling import PollingGuard
    from app.realtime.rooms import RoomManager
    from app.security import init_security, origin_checker

    engine_options(app)
    db.init_app(app)
    init_database(app)
    migrate.init_app(app, db, compare_type=True, include_name=include_name)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    url, channel = app.config["SOCKETIO_MESSAGE_QUEUE"], app.config["SOCKETIO_CHANNEL"]
    queue: dict[str, Any] = {"message_queue": url, "channel": channel}
    manager = cluster_manager(url, channel, timeout=app.config["SOCKETIO_QUEUE_TIMEOUT"],
                              ping_seconds=app.config["SOCKETIO_QUEUE_PING_SECONDS"],
                              retry_seconds=app.config["SOCKETIO_QUEUE_RETRY_SECONDS"])
    if manager is not None or not url:
        # Always given, so no app inherits an earlier app's manager.
        queue["client_manager"] = manager or RoomManager()
    socketio.init_app(
        app,
        **queue,
        cors_allowed_origins=origin_checker(app.config["CORS_ALLOWED_ORIGINS"]),
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        max_http_buffer_size=app.config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"],
        ping_interval=app.config["SOCKETIO_PING_INTERVAL"],
        ping_timeout=app.config["SOCKETIO_PING_TIMEOUT"],
        json=safe_json,
    )
    app.extensions["connections"] = ConnectionRegistry.from_config(app.config)
    app.extensions["connections"].watch(socketio.server.eio)
    init_realtime(app, socketio.server)
    app.wsgi_app = PollingGuard(app.wsgi_app, socketio.server)
    init_log_limit(app)
    init_capture()
    init_security(app)


def register_blueprints(app: Flask) -> None:
    from app.api import bp as api_bp
    from app.auth import bp as auth_bp
    from app.chat import bp as chat_bp
    from app.health import bp as health_bp
    from app.live import bp as live_bp
    from app.playground import bp as playground_bp
    from app.users import bp as users_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(users_bp)
    app.register_blueprint(api_bp, url_prefix="/api")
    app.register_blueprint(live_bp)
    app.register_blueprint(chat_bp)
    app.register_blueprint(playground_bp)
    # The API authenticates with bearer tokens, never with the session cookie.
    csrf.exempt(api_bp)


def register_namespaces(app: Flask) -> None:
    """Register fresh namespace instances: each ``init_app`` builds a new Socket.IO server.

    The live feed is made here, once per app; the server starts it (``manage.py run``,
    gunicorn's config), or else the first connection does.
    """
    from app.chat.namespace import ChatNamespace
    from app.live.feed import Feed
    from app.live.namespace import UsersNamespace
    from app.playground.namespace import DemoNamespace
    from app.realtime.namespace import socket_error_handler

    socketio.on_error_default(socket_error_handler)
    feed = app.extensions["live_feed"] = Feed(app)
    socketio.on_namespace(UsersNamespace(feed))
    socketio.on_namespace(DemoNamespace("/demo"))
    socketio.on_namespace(ChatNamespace("/chat"))


def register_cluster(app: Flask) -> None:
    """With a Redis message queue: handle the other processes' notices (logouts, chat
    messages) and list their viewers and editors in ``presence``."""
    from app.auth.sockets import listen_for_disconnects
    from app.chat.cluster import listen_for_chat
    from app.cluster import current_cluster
    from app.live.feed import NAMESPACE
    from app.live.presence import ClusterPresence

    if (cluster := current_cluster()) is not None:
        listen_for_disconnects(cluster)
        listen_for_chat(app, cluster)
        users = socketio.server.namespace_handlers[NAMESPACE]
        users.cluster = ClusterPresence(app, cluster, users._broadcast_presence)


def register_cli(app: Flask) -> None:
    from app.cli import register

    register(app)


def register_error_handlers(app: Flask) -> None:
    from app.errors import register

    register(app)
