"""Chat delivery in this process: each message once, in ``seq`` order per stream,
whatever the message queue does.

Every stream (a room, or a private conversation) with someone here has a ``Stream``:
the last ``seq`` delivered here, the ids delivered lately, and messages that came
early. A message is *offered* by the handler that stored it and, from other processes,
by the queue's ``chat`` notice; it is delivered at once when it is the next one, dropped
when it is not newer, and otherwise waits while the filler reads the gap from the
database (the truth: a deleted user's messages leave holes there).

The filler also sweeps every stream against ``chat_streams`` from time to time: every
second while the queue is down (chat crosses processes through the database meanwhile)
and once when it is back (what was published before this process resubscribed never
reached it; this one also looks for private conversations new to this process), else
every ``sweep_seconds`` (a sender that died before publishing).

A room's ``Stream`` is made when its first member here joins, as of the stream's head
then (the join's history goes up to it). A user's conversations are tracked from their
first chat socket here on: their heads are read then, and a conversation unknown at
that moment is new, so all of it is delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from flask import Flask
from sqlalchemy import update

from app.chat import store
from app.chat.filler import StreamFiller
from app.chat.hub import NAMESPACE, ChatHub
from app.chat.streams import Envelope, Stream, envelope, private_parties, room_stream
from app.extensions import db, socketio
from app.models import ChatMessage, utcnow


class ChatRelay(StreamFiller):
    """The streams of this process and their delivery (the filler task: ``StreamFiller``)."""

    def __init__(self, hub: ChatHub, namespace: str = NAMESPACE) -> None:
        super().__init__()
        self.hub = hub
        self.namespace = namespace
        self.lock = threading.Lock()  # guards ``streams`` and ``users``
        self.streams: dict[str, Stream] = {}
        self.users: dict[int, bool] = {}  # tracked user id -> still reading their heads
        self.app: Flask | None = None
        self.republish_seconds = 10.0

    # --- who is here ---------------------------------------------------------------

    def start(self, app: Flask) -> None:
        """Start the filler once per process (and the queue's listener, which a process
        with plain WebSockets only would otherwise never start)."""
        with self.lock:
            if self.app is not None:
                return
            self.app = app
            self.sweep_seconds = app.config["CHAT_SWEEP_SECONDS"]
        server = socketio.server
        if self.cluster is not None and not server.manager_initialized:
            server.manager_initialized = True
            server.manager.initialize()
        if self.sweep_seconds > 0:
            socketio.start_background_task(self._fill_forever)

    def open_room(self, room: str, enter: Callable[[], None]) -> int:
        """Run ``enter()`` (the socket joins the room) and return the last ``seq`` it was
        not sent live: its history goes up to there, everything later comes live."""
        key = room_stream(room)
        with self.lock:
            stream = self.streams.setdefault(key, Stream(None))
            stream.opening += 1
        try:
            with stream.lock:
                enter()
                if stream.last is not None:
                    return stream.last
            head = store.heads([key]).get(key, 0)
            db.session.rollback()
            with stream.lock:
                if stream.last is None:
                    stream.last = head
                    self._drain(key, stream)
                return stream.last
        finally:
            stream.opening -= 1

    def open_user(self, user_id: int) -> None:
        """Track the user's conversations here (their first chat socket here)."""
        with self.lock:
            if user_id in self.users:
                return
            self.users[user_id] = True
        try:
            heads = store.conversations_of([user_id])
        except Exception:
            with self.lock:  # the next connection tries again
                del self.users[user_id]
            raise
        db.session.rollback()
        with self.lock:
            for key in heads:
                self.streams.setdefault(key, Stream(None))
            mine = [(key, s) for key, s in self.streams.items()
                    if user_id in (private_parties(key) or ())]
            self.users[user_id] = False
        for key, stream in mine:
            with stream.lock:
                if stream.last is None:
                    stream.last = heads.get(key, 0)
                    self._drain(key, stream)

    def replayable(self, messages: Iterable[ChatMessage]) -> list[ChatMessage]:
        """The undelivered private messages a new socket is to be sent: those this process
        is past (later ones come live, to all the user's sockets) and did not deliver to
        one of theirs (this socket may have been sent it live already)."""
        out = []
        for message in messages:
            stream = self.streams.get(message.stream)
            if stream is not None and stream.last is not None \
                    and message.seq <= stream.last and message.id not in stream.reached:
                out.append(message)
        return out

    def _stream_for(self, key: str) -> Stream | None:
        """The stream's state, if anyone here follows it (a conversation of a tracked user
        seen for the first time is new: all of it is to be delivered)."""
        with self.lock:
            stream = self.streams.get(key)
            parties = private_parties(key)
            if stream is None and parties is not None:
                tracked = [self.users[p] for p in parties if p in self.users]
                if tracked:
                    stream = self.streams[key] = Stream(None if any(tracked) else 0)
            return stream

    # --- delivery ----------------------------------------------------------------

    def send(self, message: ChatMessage) -> bool:
        """Deliver a message stored by this process here and to the other processes.

        True when it reached a socket of its private recipient here (to be marked
        delivered). The queue gets it from a background publisher, tried again while
        Redis is away: a handler never waits on Redis.
        """
        env = envelope(message)
        delivered = self.offer(env, mark=False)
        if self.cluster is not None:
            self.cluster.notify_retrying("chat", self.republish_seconds, **env)
        return delivered

    def offer(self, env: Envelope, mark: bool = True) -> bool:
        """Deliver ``env`` if it is the stream's next message here (see the module doc);
        a private message that reached its recipient is marked delivered (in the
        background) unless ``mark`` is False, and True is returned."""
        key, message = env["stream"], env["message"]
        stream = self._stream_for(key)
        if stream is None:
            return False
        with stream.lock:
            seq = message["seq"]
            if stream.last is not None and (seq <= stream.last or message["id"] in stream.recent):
                return False
            if stream.last is None or seq > stream.last + 1:
                stream.early[seq] = env
                if stream.last is not None:
                    self._gap(key)
                return False
            delivered = self._deliver(stream, env)
            self._drain(key, stream)
        if delivered and mark:
            self._mark_later([message["id"]])
        return delivered

    def _drain(self, key: str, stream: Stream) -> None:
        """Deliver the early messages that are next now (the stream's lock held)."""
        assert stream.last is not None
        for seq in [s for s in stream.early if s <= stream.last]:
            del stream.early[seq]
        while (env := stream.early.pop(stream.last + 1, None)) is not None:
            self._deliver_marking(stream, env)
        if stream.early:
            self._gap(key)

    def _deliver_marking(self, stream: Stream, env: Envelope) -> None:
        if self._deliver(stream, env):
            self._mark_later([env["message"]["id"]])

    def _deliver(self, stream: Stream, env: Envelope) -> bool:
        """Emit to this process's sockets (the stream's lock held); True when a private
        message reached its recipient."""
        message = env["message"]
        stream.last = message["seq"]
        stream.recent.append(message["id"])
        server = socketio.server
        if message["room"] is not None:
            server.emit("message", message, to=message["room"], namespace=self.namespace,
                        ignore_queue=True)
            self.hub.send_bridges(message["room"], message)
            return False
        from app.auth.sockets import user_room

        room = user_room(env["recipient_id"])
        if not any(True for _ in server.manager.get_participants(self.namespace, room)):
            return False
        server.emit("private", message, to=room, namespace=self.namespace, ignore_queue=True)
        stream.reached.append(message["id"])
        return True

    def _mark_later(self, ids: list[int]) -> None:
        if ids and self.app is not None:
            socketio.start_background_task(self._mark, ids)

    def _mark(self, ids: list[int]) -> None:
        """Private messages delivered by this process: never sent again on a later
        connection, whichever process it opens on."""
        assert self.app is not None
        with self.app.app_context():
            try:
                db.session.execute(
                    update(ChatMessage)
                    .where(ChatMessage.id.in_(ids), ChatMessage.delivered_at.is_(None))
                    .values(delivered_at=utcnow()))
                db.session.commit()
            finally:
                db.session.remove()


def chat_relay() -> ChatRelay | None:
    """The relay of the ``/chat`` namespace of the current Socket.IO server, if registered."""
    server = getattr(socketio, "server", None)
    handler = server.namespace_handlers.get(NAMESPACE) if server is not None else None
    return getattr(handler, "relay", None)
