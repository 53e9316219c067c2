// The live users feed: one Socket.IO connection to /users, in one of three modes.
// - since: the plain change stream, from a cursor; every change exactly once and in
//   order, resubscribing from the last cursor seen after any reconnect.
// - watch: one user from now on (an edit form).
// - view: one page of the table (search, filters, sort, page) that the server keeps exact;
//   follow(view) switches pages on the same socket, and a reconnect subscribes again.
import { io } from "/vendor/socket.io.esm.min.js";
import { retryAfterServerClose, retryIfUnavailable } from "./reconnect.js";

const RTT_EVERY_MS = 5000;
const RETRY_MS = 1000;

export class LiveFeed {
  /**
   * @param {object} handlers onChanges(list), onSnapshot(rows, cursor), onPresence(p),
   *   onPermissions(p), onState({state, transport, rtt, detail}); for a watcher
   *   onWatch(row); for a view onPage(page, {ack}), onCounts(event), onViewError(reason)
   *   and onResubscribed() (a view subscribed again after a reconnect)
   * @param {object} from {since: the cursor of the data on the page} to follow the whole
   *   table, {watch: a user id} to follow from now on (an edit form), or {view: a view as
   *   `subscribe` takes it, cursor: the cursor of the page's counters}
   */
  constructor(handlers, { since = null, watch = null, view = null, cursor = null } = {}) {
    this.handlers = handlers;
    this.cursor = since;
    this.watch = watch;
    this.view = view;
    this.subscribed = false;
    this.pending = [];  // changes that overtook the subscribe ack (threading mode)
    this.viewSeq = 0;  // which subscribe is the latest: only its ack counts
    this.viewCursor = null;  // the cursor of the page as last rendered
    this.viewFailed = false;  // the latest subscribe was refused: no page is followed
    this.countsCursor = cursor ?? -1;
    this.everConnected = false;
    this.state = { state: "connecting", transport: null, rtt: null, detail: "" };
    this.socket = io("/users", { reconnectionDelayMax: 3000 });
    this.bind();
    this.rttTimer = setInterval(() => this.measureRtt(), RTT_EVERY_MS);
  }

  bind() {
    const socket = this.socket;
    const retryClosed = retryAfterServerClose(socket);
    socket.on("connect", () => {
      const engine = socket.io.engine;
      this.setState({ state: "connected", transport: engine.transport.name, detail: "" });
      engine.once("upgrade", (transport) => this.setState({ transport: transport.name }));
      const again = this.everConnected;
      this.everConnected = true;
      this.subscribe().then(() => { if (again && this.subscribed) this.handlers.onResubscribed?.(); });
      this.measureRtt();
    });
    socket.on("disconnect", (reason) => {
      this.subscribed = false;
      this.pending = [];
      // "io server disconnect": the server closed us (its login session ended); one more
      // attempt tells whether this tab was given a new one (a password change).
      const final = reason === "io server disconnect" && !retryClosed(reason);
      this.setState({ state: final ? "offline" : "reconnecting", transport: null, rtt: null,
                      detail: final ? "closed by the server" : reason });
    });
    socket.on("connect_error", (err) => {
      // Refused by the server: no automatic retry, unless the refusal is only for now.
      const final = !socket.active && !retryIfUnavailable(socket, err);
      this.setState({ state: final ? "offline" : "reconnecting",
                      detail: final ? `refused: ${err.message}` : err.message });
    });
    socket.on("change", (change) => this.deliver([change]));
    socket.on("changes", (changes) => this.deliver(changes));
    socket.on("view", (page) => this.deliverPage(page));
    socket.on("counts", (event) => this.deliverCounts(event));
    socket.on("presence", (p) => this.handlers.onPresence?.(p));
    socket.on("permissions", (p) => this.handlers.onPermissions?.(p));
  }

  /** Follow another view on the same connection (the ack replaces the page). */
  follow(view) {
    this.view = view;
    if (this.socket.connected) this.subscribe();
  }

  async subscribe() {
    if (this.view !== null) return this.subscribeView();
    const [event, payload] = this.watch === null
      ? ["subscribe", { since: this.cursor }] : ["watch", { id: this.watch }];
    let ack;
    try {
      ack = await this.socket.timeout(10000).emitWithAck(event, payload);
    } catch {
      this.socket.disconnect().connect();  // no answer: start over
      return;
    }
    if (ack.error) {
      this.setState({ state: "offline", detail: ack.error });
      return;
    }
    if (ack.rows) {
      this.cursor = ack.cursor;
      this.handlers.onSnapshot?.(ack.rows, ack.cursor);
    } else if (this.watch !== null) {
      this.cursor = Math.max(this.cursor ?? 0, ack.cursor);
      this.handlers.onWatch?.(ack.row);
    } else {
      this.receive(ack.changes);
      this.cursor = Math.max(this.cursor ?? 0, ack.cursor);
    }
    this.subscribed = true;
    const early = this.pending.splice(0);
    if (early.length) this.receive(early);
  }

  async subscribeView() {
    const seq = ++this.viewSeq;
    // Until this ack, `view` events belong to the view being replaced: they are kept
    // aside, and only those newer than the ack's cursor are applied after it.
    this.subscribed = false;
    this.viewFailed = false;
    let ack;
    try {
      ack = await this.socket.timeout(10000).emitWithAck("subscribe", { view: this.view });
    } catch {
      if (seq === this.viewSeq && this.socket.connected) this.socket.disconnect().connect();
      return;
    }
    if (seq !== this.viewSeq) return;  // a later subscribe replaced this one
    if (ack.error) {
      // The server still follows the previous view: ignore its events from now on.
      this.pending = [];
      this.viewFailed = true;
      if (ack.error.startsWith("rate limit")) {
        setTimeout(() => { if (seq === this.viewSeq && this.socket.connected) this.subscribe(); },
                   RETRY_MS);
      }
      this.handlers.onViewError?.(ack.error);
      return;
    }
    this.viewCursor = ack.cursor;
    this.subscribed = true;
    this.handlers.onPage?.(ack, { ack: true });
    if (ack.counts && ack.cursor >= this.countsCursor) {
      this.countsCursor = ack.cursor;
      this.handlers.onCounts?.({ cursor: ack.cursor, counts: ack.counts, changes: 0, recent: [] });
    }
    for (const page of this.pending.splice(0)) this.deliverPage(page);
  }

  deliverPage(page) {
    if (this.view === null || this.viewFailed) return;
    if (!this.subscribed) {
      this.pending.push(page);
      return;
    }
    if (page.cursor <= this.viewCursor) return;  // already as new on the page
    this.viewCursor = page.cursor;
    this.handlers.onPage?.(page, { ack: false });
  }

  deliverCounts(event) {
    if (event.cursor <= this.countsCursor) return;
    this.countsCursor = event.cursor;
    this.handlers.onCounts?.(event);
  }

  deliver(changes) {
    if (this.view !== null) return;  // a view subscriber is sent pages, not changes
    if (this.subscribed) this.receive(changes);
    else this.pending.push(...changes);
  }

  receive(changes) {
    // Drop anything already applied (a replay overlapping a broadcast, say).
    const fresh = changes.filter((c) => this.cursor === null || c.cursor > this.cursor);
    if (!fresh.length) return;
    this.cursor = fresh[fresh.length - 1].cursor;
    this.handlers.onChanges?.(fresh);
  }

  async measureRtt() {
    if (!this.socket.connected) return;
    const start = performance.now();
    try {
      await this.socket.timeout(5000).emitWithAck("latency", {});
      this.setState({ rtt: Math.round(performance.now() - start) });
    } catch {
      this.setState({ rtt: null });
    }
  }

  setState(patch) {
    Object.assign(this.state, patch);
    this.handlers.onState?.({ ...this.state });
  }
}

/** Show the connection state, transport and round trip in a badge element. */
export function renderBadge(badge, { state, transport, rtt, detail }) {
  badge.dataset.state = state;
  const parts = [state];
  if (state === "connected" && transport) parts.push(transport);
  if (state === "connected" && rtt !== null) parts.push(`${rtt} ms`);
  badge.textContent = parts.join(" · ");
  badge.title = detail || "";
}
