#!/bin/sh
# Container entry point: bring the schema up to date, then serve with gunicorn.
#
#   entrypoint.sh                 migrate, then serve on $HOST:$PORT (0.0.0.0:5000), and on
#                                 the Unix socket $UNIX_SOCKET if set (gunicorn.conf.py)
#   entrypoint.sh --log-level X   the same, extra options handed to gunicorn
#   entrypoint.sh flask users ... run that command instead (one-off jobs)
#
# SKIP_DB_UPGRADE=1 skips `flask db upgrade`: set it on all but one replica, or run the
# upgrade as a one-off job, so that several containers starting together do not race.
set -eu
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ "${SKIP_DB_UPGRADE:-0}" != "1" ]; then
    flask db upgrade
fi

# -w 1: one worker per process, because Socket.IO sessions are sticky (a client's polling
# requests and its WebSocket must all reach the process holding its session; gunicorn would
# spread them over workers). Scale out with several containers behind a sticky-session
# proxy and SOCKETIO_MESSAGE_QUEUE=redis://... shared by all of them.
# --worker-connections: every open WebSocket is one long-lived greenlet and connection, so
# this caps the simultaneous clients of one process.
exec gunicorn -c deploy/gunicorn.conf.py \
    -k app.worker.Worker \
    -w 1 --worker-connections "${WORKER_CONNECTIONS:-10000}" \
    "$@" manage:app
