"""Stub."""
from flask_socketio import Namespace


class UsersNamespace(Namespace):
    pass
