"""Stub."""
from flask_socketio import Namespace


class DemoNamespace(Namespace):
    pass
