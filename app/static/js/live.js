// The live users feed: one Socket.IO connection to /users that subscribes from a
// cursor, applies every change exactly once and in order, and resubscribes from the
// last cursor it saw after any reconnect, so nothing is lost or applied twice.
import { io } from "/vendor/socket.io.esm.min.js";

const RTT_EVERY_MS = 5000;

export class LiveFeed {
  /**
   * @param {object} handlers onChanges(list), onSnapshot(rows, cursor), onPresence(p),
   *   onPermissions(p), onState({state, transport, rtt, detail})
   *   and, for a watcher, onWatch(row)
   * @param {object} from {since: the cursor of the data on the page} to follow the whole
   *   table, or {watch: a user id} to follow from now on (an edit form)
   */
  constructor(handlers, { since = null, watch = null } = {}) {
    this.handlers = handlers;
    this.cursor = since;
    this.watch = watch;
    this.subscribed = false;
    this.pending = [];  // changes that overtook the subscribe ack (threading mode)
    this.state = { state: "connecting", transport: null, rtt: null, detail: "" };
    this.socket = io("/users", { reconnectionDelayMax: 3000 });
    this.bind();
    this.rttTimer = setInterval(() => this.measureRtt(), RTT_EVERY_MS);
  }

  bind() {
    const socket = this.socket;
    socket.on("connect", () => {
      const engine = socket.io.engine;
      this.setState({ state: "connected", transport: engine.transport.name, detail: "" });
      engine.once("upgrade", (transport) => this.setState({ transport: transport.name }));
      this.subscribe();
      this.measureRtt();
    });
    socket.on("disconnect", (reason) => {
      this.subscribed = false;
      this.pending = [];
      // "io server disconnect": the server closed us (logged out, deactivated).
      const final = reason === "io server disconnect";
      this.setState({ state: final ? "offline" : "reconnecting", transport: null, rtt: null,
                      detail: final ? "closed by the server" : reason });
    });
    socket.on("connect_error", (err) => {
      const refused = !socket.active;  // the server refused us: no automatic retry
      this.setState({ state: refused ? "offline" : "reconnecting",
                      detail: refused ? `refused: ${err.message}` : err.message });
    });
    socket.on("change", (change) => this.deliver([change]));
    socket.on("changes", (changes) => this.deliver(changes));
    socket.on("presence", (p) => this.handlers.onPresence?.(p));
    socket.on("permissions", (p) => this.handlers.onPermissions?.(p));
  }

  async subscribe() {
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

  deliver(changes) {
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
