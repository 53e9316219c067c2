"""The /users namespace with Flask-SocketIO's test client (the follower driven by hand)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from app.auth.tokens import issue_token
from app.extensions import db, socketio
from app.live import shared_reads
from app.live import subscriptions as subscriptions_module
from app.live.capture import set_change_context
from app.live.changelog import current_cursor, prune, pruned_through, read_changes
from app.live.feed import BATCH_LIMIT
from app.realtime import fanout
from app.users.service import update_user
from tests.conftest import BOTH_DATABASES, csrf_token, login

NS = "/users"


@pytest.fixture
def connect(sockets, admin):
    """Connect a test client to /users with a token of ``user`` (the admin by default)."""
    return lambda user=None, **kwargs: sockets(NS, user or admin, **kwargs)


def feed(app):
    return app.extensions["live_feed"]


def events(client, name):
    return [e["args"][0] for e in client.get_received(NS) if e["name"] == name]


def test_connect_without_credentials_is_refused(app):
    client = socketio.test_client(app, namespace=NS)
    assert not client.is_connected(NS)
    bad = socketio.test_client(app, namespace=NS, auth={"token": "not-a-token"})
    assert not bad.is_connected(NS)


def test_connect_with_login_session(app, client, admin):
    login(client, "admin")
    sio = socketio.test_client(app, namespace=NS, flask_test_client=client)
    assert sio.is_connected(NS)
    ack = sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert [r["username"] for r in ack["rows"]] == ["admin"]


def test_snapshot_has_every_user_and_the_current_cursor(connect, make_user):
    make_user("alice")
    make_user("bob")
    ack = connect().emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert ack["cursor"] == current_cursor() == 3
    assert {r["username"] for r in ack["rows"]} == {"admin", "alice", "bob"}
    assert all("password_hash" not in r for r in ack["rows"])


@BOTH_DATABASES
def test_resume_replays_the_changes_after_since_then_streams(app, connect, make_user):
    cursor = current_cursor()
    alice = make_user("alice")
    sio = connect()
    ack = sio.emit("subscribe", {"since": cursor}, namespace=NS, callback=True)
    assert [(c["op"], c["row"]["username"]) for c in ack["changes"]] == [("insert", "alice")]
    assert ack["cursor"] == current_cursor()

    set_change_context("admin", "ui")
    update_user(alice, {"email": "alice@new.example"}, alice.version)
    assert feed(app).poll_once() == 1
    [change] = events(sio, "change")
    assert change["cursor"] == ack["cursor"] + 1
    assert change["op"] == "update" and change["id"] == alice.id
    assert change["row"]["email"] == "alice@new.example" and change["row"]["version"] == 2
    assert change["before"] == {"email": "alice@example.com"}  # only what changed
    assert (change["actor"], change["origin"]) == ("admin", "ui")


def test_changes_in_one_poll_come_as_one_batch_in_cursor_order(app, connect, make_user):
    sio = connect()
    sio.emit("subscribe", {"since": current_cursor()}, namespace=NS, callback=True)
    for name in ("ann", "amy", "abe"):
        make_user(name)
    db.session.execute(text("DELETE FROM users WHERE username = 'amy'"))
    db.session.commit()
    assert feed(app).poll_once() == 4
    [batch] = events(sio, "changes")
    assert [c["op"] for c in batch] == ["insert", "insert", "insert", "delete"]
    cursors = [c["cursor"] for c in batch]
    assert cursors == sorted(cursors) and len(set(cursors)) == 4
    assert batch[-1]["row"] is None and batch[-1]["origin"] == "sql"
    assert batch[0]["before"] is None
    assert batch[-1]["before"] == {"username": "amy", "email": "amy@example.com",
                                   "role": "user", "active": True}


def test_plain_sql_update_is_captured_and_bumps_the_version(app, connect, make_user):
    alice = make_user("alice")
    version = alice.version
    sio = connect()
    sio.emit("subscribe", {"since": current_cursor()}, namespace=NS, callback=True)
    db.session.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": alice.id})
    db.session.commit()
    feed(app).poll_once()
    [change] = events(sio, "change")
    assert change["row"]["role"] == "admin" and change["row"]["version"] == version + 1
    assert (change["actor"], change["origin"]) == (None, "sql")


@pytest.mark.parametrize("since", ["1", -1, 1.5, True, [1], {"a": 1}])
def test_bad_since_gets_an_error_and_the_connection_lives_on(connect, since):
    sio = connect()
    ack = sio.emit("subscribe", {"since": since}, namespace=NS, callback=True)
    assert "since" in ack["error"]
    assert sio.is_connected(NS)
    assert "rows" in sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)


@pytest.mark.parametrize("payload", [None, "since", 5, [None]])
def test_payload_that_is_not_an_object_gets_an_error(connect, payload):
    sio = connect()
    ack = sio.emit("subscribe", payload, namespace=NS, callback=True)
    assert "object" in ack["error"]
    assert sio.is_connected(NS)


def test_without_an_ack_the_error_comes_as_an_error_event(connect):
    sio = connect()
    sio.emit("subscribe", {"since": "x"}, namespace=NS)
    assert events(sio, "error") == [{"error": "since must be null or a non-negative integer"}]
    sio.emit("no_such_event", {}, namespace=NS)
    assert events(sio, "error") == [{"error": "unknown event 'no_such_event'"}]
    assert sio.is_connected(NS)


def test_since_in_the_future_or_pruned_gets_a_snapshot(app, connect, make_user):
    make_user("alice")
    sio = connect()
    ahead = sio.emit("subscribe", {"since": current_cursor() + 100}, namespace=NS, callback=True)
    assert "rows" in ahead and ahead["cursor"] == current_cursor()

    old = current_cursor()
    make_user("bob")
    feed(app).poll_once()
    assert prune(timedelta(seconds=-1)) == 3  # everything so far is "old"
    stale = sio.emit("subscribe", {"since": old - 1}, namespace=NS, callback=True)
    assert {r["username"] for r in stale["rows"]} == {"admin", "alice", "bob"}
    fresh = sio.emit("subscribe", {"since": current_cursor()}, namespace=NS, callback=True)
    assert fresh == {"cursor": current_cursor(), "changes": []}


def test_prune_in_batches_takes_every_old_change_and_keeps_the_cursor(app, make_user):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        make_user(name)
    head = current_cursor()
    logged = len(read_changes(0))
    assert logged >= 5
    assert prune(timedelta(seconds=-1), batch=2) == logged  # three batches or more
    assert read_changes(0) == [] and pruned_through() == head == current_cursor()
    make_user("frank")
    assert [c.cursor for c in read_changes(0)] == [head + 1]


@BOTH_DATABASES
def test_pruning_never_moves_the_pruned_cursor_back(app, connect, make_user):
    """Another process pruned further meanwhile (this one's session saw an older value):
    this prune must not lower ``pruned_through``, or a client resuming from a cursor
    whose changes are gone would get a replay with a hole instead of a snapshot."""
    make_user("alice")
    assert prune(timedelta(seconds=-1)) == 2
    make_user("bob")
    ahead = current_cursor() + 50
    other = create_engine(db.engine.url)
    with other.begin() as conn:  # the other process
        conn.execute(text("UPDATE live_state SET value = :v WHERE key = 'pruned_through'"),
                     {"v": ahead})
    other.dispose()
    assert prune(timedelta(seconds=-1)) == 1
    assert current_cursor() == ahead
    sio = connect()
    ack = sio.emit("subscribe", {"since": ahead - 10}, namespace=NS, callback=True)
    assert "rows" in ack  # a snapshot: the changes after that cursor are gone


def test_deactivating_a_user_closes_their_sockets(app, connect, make_user, admin):
    bob = make_user("bob")
    bob_socket = connect(bob)
    watcher = connect()
    watcher.emit("subscribe", {"since": current_cursor()}, namespace=NS, callback=True)
    assert bob_socket.is_connected(NS)
    update_user(bob, {"active": False}, bob.version)
    feed(app).poll_once()
    assert not bob_socket.is_connected(NS)
    assert watcher.is_connected(NS)
    refused = socketio.test_client(app, namespace=NS, auth={"token": issue_token(bob)})
    assert not refused.is_connected(NS)


def test_demoting_an_admin_tells_their_open_pages(app, connect, make_user):
    boss = make_user("boss", role="admin")
    boss_socket = connect(boss)
    update_user(boss, {"role": "user"}, boss.version)
    connect().emit("subscribe", {"since": None}, namespace=NS, callback=True)
    feed(app).poll_once()
    assert events(boss_socket, "permissions") == [{"role": "user", "active": True}]


def test_presence_lists_viewers_and_editors(connect, make_user):
    alice = make_user("alice")
    viewer = connect()
    viewer.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    editor = connect(make_user("carol", role="admin"))
    ack = editor.emit("watch", {"id": alice.id}, namespace=NS, callback=True)
    assert ack["row"]["username"] == "alice"
    presence = events(viewer, "presence")[-1]
    assert presence == {"viewers": ["admin"], "editing": {str(alice.id): ["carol"]}}
    editor.disconnect(NS)
    assert events(viewer, "presence")[-1] == {"viewers": ["admin"], "editing": {}}


def test_a_connection_is_a_viewer_or_an_editor_and_leaves_presence_for_good(connect,
                                                                            make_user):
    """Subscribe and watch replace each other (as what the connection follows does); a
    connection that did both is gone from presence once it disconnects."""
    alice = make_user("alice")
    viewer = connect()
    viewer.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    script = connect(make_user("carol", role="admin"))
    script.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    script.emit("watch", {"id": alice.id}, namespace=NS, callback=True)
    assert events(viewer, "presence")[-1] == {"viewers": ["admin"],
                                              "editing": {str(alice.id): ["carol"]}}
    script.emit("subscribe", {"view": {}}, namespace=NS, callback=True)
    assert events(viewer, "presence")[-1] == {"viewers": ["admin", "carol"], "editing": {}}
    script.emit("watch", {"id": alice.id}, namespace=NS, callback=True)
    script.disconnect(NS)
    assert events(viewer, "presence")[-1] == {"viewers": ["admin"], "editing": {}}


def test_presence_is_sent_to_everyone_only_when_it_changes(connect):
    first = connect()
    first.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert events(first, "presence") == [{"viewers": ["admin"], "editing": {}}]
    second = connect()  # another tab of the same user: nothing new for the first tab
    second.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert events(second, "presence") == [{"viewers": ["admin"], "editing": {}}]
    assert events(first, "presence") == []
    second.disconnect(NS)
    assert events(first, "presence") == []


def test_presence_changes_close_together_go_out_as_one_broadcast(connect, make_user):
    """The first change goes out at once; changes soon after it wait and go out together
    (a crowd arriving at once is not each newcomer's arrival sent to all the others)."""
    users = socketio.server.namespace_handlers[NS]
    users.presence_cost = 1.0  # seconds per connection: two seconds with two
    first = connect()
    crowd = [connect(make_user(name)) for name in ("bob", "carol")]
    first.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert events(first, "presence") == [{"viewers": ["admin"], "editing": {}}]
    for sio in crowd:
        sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert events(first, "presence") == []  # held back
    everyone = {"viewers": ["admin", "bob", "carol"], "editing": {}}
    deadline = time.monotonic() + 10
    while not (got := events(first, "presence")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == [everyone]  # one broadcast for both, not [admin, bob] first
    assert all(events(sio, "presence")[-1:] == [everyone] for sio in crowd)


def test_a_disconnect_during_a_presence_broadcast_neither_hangs_nor_is_lost(
        connect, make_user, monkeypatch):
    """A send can close a dead connection, whose disconnect handler changes the presence
    while it is being sent: that change goes out next, and nothing waits forever."""
    viewer = connect()
    viewer.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    dead = connect(make_user("bob"))
    dead.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    newcomer = connect(make_user("carol"))
    real_emit = fanout.emit

    def emit(server, event, data, room, namespace):
        if event == "presence" and dead.is_connected(NS):
            dead.disconnect(NS)  # as engineio closes a connection whose pings timed out
        real_emit(server, event, data, room, namespace)

    monkeypatch.setattr(fanout, "emit", emit)
    viewer.get_received(NS)
    subscribing = threading.Thread(target=newcomer.emit, args=("subscribe", {"since": None}),
                                   kwargs={"namespace": NS, "callback": True}, daemon=True)
    subscribing.start()
    subscribing.join(10)
    assert not subscribing.is_alive(), "the presence broadcast hung"
    assert events(viewer, "presence")[-1] == {"viewers": ["admin", "carol"], "editing": {}}


def test_logging_out_closes_the_users_sockets(app, client, admin):
    login(client, "admin")
    sio = socketio.test_client(app, namespace=NS, flask_test_client=client)
    assert sio.is_connected(NS)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert not sio.is_connected(NS)


def test_a_subscriber_joins_after_its_ack_and_catches_up_what_was_emitted_meanwhile(
        app, connect, make_user):
    """Between an ack and the join, the follower may emit to the room: the joining
    client gets those changes first, directly, then the room's next ones."""
    sio = connect()
    sid = socketio.server.manager.sid_from_eio_sid(sio.eio_sid, NS)
    ack_cursor = current_cursor()
    make_user("meanwhile1")
    make_user("meanwhile2")
    feed(app).poll_once()  # emitted to the room, which this client has not joined yet
    assert events(sio, "changes") == []
    subscriptions().join(sid, ack_cursor, subscriptions()._begin(sid))
    make_user("after")
    feed(app).poll_once()
    assert received_names(sio) == [("changes", ["meanwhile1", "meanwhile2"]), ("change", "after")]


def test_a_subscriber_whose_ack_is_ahead_of_the_follower_gets_nothing_twice(
        app, connect, make_user):
    """An ack is read outside the feed's lock, possibly as of changes the follower has
    not emitted yet: it emits them to the room before the client joins it."""
    sio = connect()
    sid = socketio.server.manager.sid_from_eio_sid(sio.eio_sid, NS)
    feed(app).head()
    make_user("in_the_ack1")
    make_user("in_the_ack2")
    subscriptions().join(sid, current_cursor(), subscriptions()._begin(sid))
    make_user("after")
    feed(app).poll_once()
    assert received_names(sio) == [("change", "after")]


def bulk_insert(count: int) -> None:
    """``count`` users in one plain-SQL statement (committed; the feed not polled)."""
    db.session.execute(text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
        "INSERT INTO users (username, email) SELECT 'bulk' || i, 'bulk' || i || '@example.com' "
        "FROM n"), {"count": count})
    db.session.commit()


@pytest.mark.parametrize("polled", [True, False], ids=["emitted", "ahead-of-the-follower"])
def test_a_bulk_write_after_the_ack_arrives_whole_in_order_and_in_batches(
        app, connect, make_user, polled):
    """More than two batches went by between the ack and the join (emitted to the room
    already, or not even seen by the follower yet): the client gets each change once,
    in order, in events of at most one batch."""
    sio = connect()
    sid = socketio.server.manager.sid_from_eio_sid(sio.eio_sid, NS)
    feed(app).head()
    make_user("in_the_ack")
    ack_cursor = current_cursor()
    bulk_insert(BATCH_LIMIT * 2 + 7)
    if polled:
        feed(app).poll_once()
    subscriptions().join(sid, ack_cursor, subscriptions()._begin(sid))
    events = received_events(sio)
    cursors = [c["cursor"] for _, changes in events for c in changes]
    assert cursors == list(range(ack_cursor + 1, current_cursor() + 1))
    assert max(len(changes) for _, changes in events) <= BATCH_LIMIT


def test_subscribing_again_never_sends_a_change_twice(app, connect, make_user, monkeypatch):
    """A change committed and emitted while the new ack is read reaches the client once,
    after the ack (it is out of the room meanwhile)."""
    sio = connect()
    sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    every_user = subscriptions_module.every_user

    def meanwhile():
        rows = every_user()
        make_user("meanwhile")
        feed(app).poll_once()
        return rows

    monkeypatch.setattr(subscriptions_module, "every_user", meanwhile)
    make_user("before")  # the stream moves on: the next ack is read anew
    feed(app).poll_once()
    sio.get_received(NS)
    ack = sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert [c["cursor"] for _, changes in received_events(sio) for c in changes] == \
        [ack["cursor"] + 1]


@pytest.mark.parametrize("replay", [False, True], ids=["snapshot", "replay"])
def test_subscribers_at_the_same_cursor_share_one_read(app, connect, make_user, monkeypatch,
                                                       replay):
    """A crowd subscribing with the same ``since`` while the stream stands still (a
    process's clients moving over) costs one read; once a change went out, the next
    subscriber's ack is read anew and has it, and the crowd got it as an event."""
    make_user("first")
    since = current_cursor() - 1 if replay else None
    reads = []

    def counting(real):
        def counted(*args, **kwargs):
            reads.append(1)
            return real(*args, **kwargs)
        return counted

    for name in ("every_user", "read_changes"):
        real = getattr(subscriptions_module, name)
        monkeypatch.setattr(subscriptions_module, name, counting(real))
    feed(app).poll_once()
    crowd = [connect() for _ in range(3)]
    acks = [sio.emit("subscribe", {"since": since}, namespace=NS, callback=True)
            for sio in crowd]
    assert len(reads) == 1
    assert acks == [acks[0]] * 3 and acks[0]["cursor"] == current_cursor()
    newest = acks[0]["changes"][-1]["row"] if replay else acks[0]["rows"][-1]
    assert newest["username"] == "first"

    make_user("second")
    feed(app).poll_once()
    late = connect().emit("subscribe", {"since": since}, namespace=NS, callback=True)
    assert len(reads) == 2
    assert late["cursor"] == acks[0]["cursor"] + 1
    newest = late["changes"][-1]["row"] if replay else late["rows"][-1]
    assert newest["username"] == "second"
    for sio in crowd:
        assert received_names(sio) == [("change", "second")]


def test_a_resubscriber_never_gets_a_shared_ack_older_than_what_it_was_sent(
        app, connect, make_user, monkeypatch):
    """A subscriber that followed the stream and subscribes again while another one's
    snapshot is being read does not take that read if the stream moved past it
    meanwhile: it would be sent a change it already had."""
    follower, other = connect(), connect()
    follower.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    make_user("before")
    feed(app).poll_once()
    waiting, polled = threading.Event(), threading.Event()

    class Read(shared_reads._Read):
        def __init__(self) -> None:
            super().__init__()
            self.done = SignallingEvent()

    class SignallingEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()  # a follower asks while the read is in flight
            return super().wait(timeout)

    every_user = subscriptions_module.every_user

    def slow_every_user():
        rows = every_user()
        if threading.current_thread().name == "leader":
            make_user("meanwhile")  # sent to the follower, still in the room
            feed(app).poll_once()
            polled.set()
            assert waiting.wait(10), "the follower never joined the read"
        return rows

    monkeypatch.setattr(shared_reads, "_Read", Read)
    monkeypatch.setattr(subscriptions_module, "every_user", slow_every_user)
    follower.get_received(NS)
    leader = threading.Thread(name="leader", target=other.emit,
                              args=("subscribe", {"since": None}),
                              kwargs={"namespace": NS, "callback": True})
    leader.start()
    try:
        assert polled.wait(10)
        ack = follower.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    finally:
        leader.join(10)
    assert ack["cursor"] == current_cursor()
    assert [c["cursor"] for _, changes in received_events(follower) for c in changes] == \
        [ack["cursor"]]


def test_a_join_of_a_replaced_subscription_does_nothing(app, connect, make_user):
    """A join still pending when the client subscribed again (to the stream, or to a
    view) neither replays nor puts it back in the stream's room."""
    sio = connect()
    sid = socketio.server.manager.sid_from_eio_sid(sio.eio_sid, NS)
    plain = sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    first = subscriptions()._serials[sid]
    view = sio.emit("subscribe", {"view": {"sort": "username"}}, namespace=NS, callback=True)
    assert "ids" in view
    subscriptions().join(sid, plain["cursor"], first)  # too late: replaced by the view
    make_user("aaron")
    feed(app).poll_once()
    names = [e["name"] for e in sio.get_received(NS)]
    assert "view" in names and "change" not in names and "changes" not in names


def subscriptions():
    return socketio.server.namespace_handlers[NS].subscriptions


def received_events(sio) -> list[tuple[str, list[dict]]]:
    """Every change event received, as (name, [change...])."""
    return [(e["name"], e["args"][0] if e["name"] == "changes" else [e["args"][0]])
            for e in sio.get_received(NS) if e["name"] in ("change", "changes")]


def received_names(sio) -> list[tuple[str, list[str] | str]]:
    return [(name, [c["row"]["username"] for c in changes] if name == "changes"
             else changes[0]["row"]["username"]) for name, changes in received_events(sio)]


@pytest.mark.parametrize("auth", [{"token": 123}, {"token": ["x"]}, "token", 5])
def test_malformed_auth_is_refused_cleanly(app, auth):
    client = socketio.test_client(app, namespace=NS, auth=auth)
    assert not client.is_connected(NS)


def test_live_stats_counts_this_minutes_changes_for_the_chart(admin_client, make_user):
    make_user("alice")
    make_user("bob")
    stats = admin_client.get("/live/stats").get_json()
    assert len(stats["per_minute"]) == 60
    # The admin and the two users, just now: this minute (or the one before, when a
    # minute began meanwhile), nothing earlier.
    assert sum(stats["per_minute"][58:]) == 3 and stats["per_minute"][59] >= 1
    assert sum(stats["per_minute"][:58]) == 0
