"""Stub."""
from flask_socketio import Namespace


class ChatNamespace(Namespace):
    pass
