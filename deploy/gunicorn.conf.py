"""Gunicorn settings for LiveCRUD: one gevent-websocket worker per process.

Used by deploy/entrypoint.sh (and so by the Docker image):
``gunicorn -c deploy/gunicorn.conf.py manage:app``. Every value can be overridden on the
command line or through GUNICORN_CMD_ARGS.
"""

# gevent must patch the standard library before anything else imports it (sockets, ssl,
# threading), so this is the first thing gunicorn's master runs. manage.py patches too;
# patching twice is harmless.
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

wsgi_app = "manage:app"
bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"]
# A reverse proxy on the same host reaches the process through a Unix socket as well: a
# send there costs the kernel about a third of one on loopback TCP, and every delivery to
# a client passes through this hop (docs/deploy.md). Anyone who may open the socket can
# connect (gunicorn's umask, 0): put it in a directory only the app's and the proxy's
# users can enter. A --bind on the command line replaces both addresses.
if unix_socket := os.environ.get("UNIX_SOCKET"):
    bind.append(f"unix:{unix_socket}")

# Socket.IO sessions are sticky: every request of one client must reach the process that
# holds its session, and gunicorn's master spreads requests over workers at random. So one
# worker per process; scale out with several processes/containers behind a sticky-session
# proxy, sharing SOCKETIO_MESSAGE_QUEUE (Redis). See docs/deploy.md.
# app.worker.Worker: gevent-websocket's worker with the app's handler (frame size limit,
# connection caps; app/websocket.py) and the contract's SIGTERM shutdown: stop accepting at
# once, tell every client to go, exit within 10 s.
worker_class = "app.worker.Worker"
workers = 1
# Each open WebSocket holds one greenlet and one connection for its whole life: this is the
# ceiling on simultaneous clients of the process, not a pool of request slots.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))

# A gevent worker only misses its heartbeat when some code blocks without yielding.
timeout = 60
# On SIGTERM the worker tells every client to go at once; this bounds the wait for their
# connections to end (the contract: exit within 10 s).
graceful_timeout = 6
keepalive = 5

accesslog = "-"
# gunicorn's default format, with the path (%(U)s) instead of the request line: query
# strings carry secrets, such as the API token of /ws/chat/<room>?token=... Note that
# GeventWebSocketWorker's handler bypasses gunicorn's access log (it writes none); the
# format applies when another worker class is chosen (GUNICORN_CMD_ARGS).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Trust X-Forwarded-* only from these addresses (the reverse proxy).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No run-time control socket: nothing uses it, and it would need a writable $HOME.
control_socket_disable = True


def post_worker_init(worker) -> None:
    """Start the live feed as soon as the worker has loaded the app, not at the first
    connection: clients that reconnect after a restart find it already following."""
    worker.wsgi.extensions["live_feed"].start()
