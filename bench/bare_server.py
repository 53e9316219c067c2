"""The bare reference: Flask-SocketIO under gevent that only emits a fixed 250-byte event
to a room when triggered over HTTP. bench/live.py reports LiveCRUD relative to it."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")
PAD = "x" * 200  # with seq and t, about 250 bytes on the wire


@socketio.on("connect")
def connect(auth=None):
    join_room("all")


@app.post("/emit")
def emit():
    socketio.emit("bare", {"seq": int(request.args["seq"]), "t": time.time() * 1000,
                           "pad": PAD}, to="all")
    return "", 204


if __name__ == "__main__":
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_output=False)
