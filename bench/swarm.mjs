// A swarm of Socket.IO clients for bench/live.py and bench/cluster.py. Reads commands on
// stdin, one per line:
//   connect {"url", "namespace", "event", "token"?, "clients", "subscribe": bool,
//            "tokens"?: [token...], (client i authenticates with tokens[i % tokens.length])
//            "views"?: [view...],   (with views, client i follows views[i % views.length])
//            "localAddress"?,       (the clients' source address, e.g. 127.0.1.1: nginx's
//                                    ip_hash picks the upstream from it)
//            "batch"?,              (clients connecting at once, 50 by default)
//            "client"?}             ("socket.io": socket.io-client, the default; "raw":
//                                    see openRaw)
//   commits [[cursor, commit time ms]...]   (views: the measured changes, in cursor order)
//   report            -> prints one JSON line of latency/delivery stats, then resets them;
//                        "histogram" maps latency in tenths of ms to a count, so that the
//                        reports of several swarms merge into exact percentiles
//   quit
// Latency of one delivery = arrival time - the event's own timestamp (the change's
// commit time "at", or the bare server's "t"), both on this machine's clock. A view
// event delivers every change up to its cursor that the client had not seen: each is
// timed from its own commit (sent by `commits`, read from the change log), listed in the
// event or not.
import { randomBytes } from "node:crypto";
import net from "node:net";
import { createInterface } from "node:readline";
import { constants, inflateRawSync } from "node:zlib";
import { io } from "socket.io-client";

let sockets = [];
let latencies = [];
let delivered = 0;
let outOfOrder = 0;
let lastSeen = new Map();  // socket index -> last cursor/seq

let commits = [];  // views: [cursor, commit time], in cursor order
const arrivals = new Map();  // views: socket index -> [[cursor, arrival time]...] not yet counted
const counted = new Map();  // views: socket index -> how many of `commits` it has delivered

const now = () => performance.timeOrigin + performance.now();
const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function record(index, seq, sentAt) {
  delivered += 1;
  latencies.push(now() - sentAt);
  const last = lastSeen.get(index);
  if (last !== undefined && seq <= last) outOfOrder += 1;
  lastSeen.set(index, seq);
}

// Every client receives the same change: parse its time once, not once per client, so
// the swarm's own cost per delivery stays as low as with the bare server's numeric "t".
const commitTimes = new Map();  // cursor -> commit time in ms
function commitTime(change) {
  let t = commitTimes.get(change.cursor);
  if (t === undefined) {
    t = Date.parse(change.at);
    commitTimes.set(change.cursor, t);
  }
  return t;
}

function open(index, opts) {
  return new Promise((resolve, reject) => {
    const socket = io(opts.url + opts.namespace, {
      forceNew: true, transports: ["websocket"], reconnection: false,
      localAddress: opts.localAddress,
      // No compression: Node's ws inflates on libuv's pool, ten messages at a time for
      // the whole process, so a thousand clients in one process would measure that queue
      // (p99 3.3 s at 200 changes/s), not the server. A browser inflates its own, natively.
      perMessageDeflate: false,
      auth: authOf(index, opts) ?? undefined,
    });
    const timer = setTimeout(() => reject(new Error(`client ${index}: connect timeout`)), 60000);
    socket.on("connect_error", (err) => { clearTimeout(timer); reject(err); });
    socket.on("connect", async () => {
      clearTimeout(timer);
      if (opts.subscribe) {
        const ack = await socket.timeout(60000).emitWithAck("subscribe", subscriptionOf(index, opts));
        if (ack.error) return reject(new Error(ack.error));
      }
      resolve(socket);
    });
    if (opts.event === "view") {
      socket.on("view", (v) => {
        if (!arrivals.has(index)) arrivals.set(index, []);
        arrivals.get(index).push([v.cursor, now()]);
      });
    } else if (opts.event === "changes") {
      const one = (c) => record(index, c.cursor, commitTime(c));
      socket.on("change", one);
      socket.on("changes", (list) => list.forEach(one));
    } else {
      socket.on(opts.event, (m) => record(index, m.seq, m.t));
    }
  });
}

// A lean Socket.IO client (Engine.IO 4, Socket.IO 5: open, ping, namespace connect with
// auth, subscribe with an ack, events) on a minimal WebSocket over a TCP socket that
// offers permessage-deflate, for the "changes" event (it may subscribe to a view, as
// bench/connect.py's crowd does, but does not measure view events). The server
// compresses and encodes a change frame once for all of its subscribers, so identical
// bytes are inflated and parsed once (compared whole, never guessed): the swarm's cost
// per delivery is then the socket's, not zlib's or JSON.parse's, and the measuring
// clients leave the CPU to the servers.
const KEEP = 64;  // distinct frames remembered
const inflated = [];  // {payload, text}: the latest compressed frames and their text
const parsed = [];  // {frame, changes: [[cursor, time]...]}: the latest frames' changes
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);

function remembered(list, key) {
  for (let i = list.length - 1; i >= 0; i--) {
    const entry = list[i];
    if (entry.key.length === key.length && entry.key.equals(key)) return entry;
  }
  return null;
}

function remember(list, key, value) {
  if (list.push({ key: Buffer.from(key), value }) > KEEP) list.shift();
  return value;
}

function textOf(payload, compressed) {
  if (!compressed) return payload;
  const hit = remembered(inflated, payload);
  return hit ? hit.value : remember(inflated, payload, inflateRawSync(Buffer.concat([payload, TAIL]),
    { finishFlush: constants.Z_SYNC_FLUSH }));
}

function changesOf(frame, skip) {
  const hit = remembered(parsed, frame);
  if (hit) return hit.value;
  const [event, data] = JSON.parse(frame.toString("utf8", skip));
  const list = event === "changes" ? data : event === "change" ? [data] : [];
  return remember(parsed, frame, list.map((c) => [c.cursor, commitTime(c)]));
}

function wsFrame(text) {  // a masked client text frame (short: under 64 KB)
  const data = Buffer.from(text);
  const mask = randomBytes(4);
  const head = data.length < 126 ? Buffer.from([0x81, 0x80 | data.length])
    : Buffer.from([0x81, 0x80 | 126, data.length >> 8, data.length & 0xff]);
  for (let i = 0; i < data.length; i++) data[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, data]);
}

function authOf(index, opts) {  // client i's auth: {token} (tokens[i % length]), or null
  const token = opts.tokens ? opts.tokens[index % opts.tokens.length] : opts.token;
  return token ? { token } : null;
}

function subscriptionOf(index, opts) {  // client i's subscribe payload
  return opts.views ? { view: opts.views[index % opts.views.length] } : { since: null };
}

function openRaw(index, opts) {
  if (opts.views && opts.event === "view") throw new Error("the raw client measures plain changes only");
  return new Promise((resolve, reject) => {
    const ns = opts.namespace;
    const event = Buffer.from(`42${ns},`);
    const url = new URL(opts.url);
    const sock = net.connect({ host: url.hostname, port: url.port, localAddress: opts.localAddress });
    sock.setNoDelay(true);
    const send = (text) => sock.write(wsFrame(text));
    const client = { connected: false, disconnect: () => sock.destroy() };
    let last = -1;  // the last cursor this client saw
    let buffer = null;  // bytes not yet parsed: the HTTP answer, then frames
    let upgraded = false;
    const timer = setTimeout(() => reject(new Error(`client ${index}: connect timeout`)), 60000);
    const fail = (why) => { clearTimeout(timer); sock.destroy(); reject(new Error(`client ${index}: ${why}`)); };
    sock.on("error", (err) => fail(String(err)));
    sock.on("close", () => { client.connected = false; });
    sock.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${url.host}\r\n`
      + `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n`
      + `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n`
      + `Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n`);

    function message(frame) {
      if (frame.length > event.length && frame.compare(event, 0, event.length, 0, event.length) === 0) {
        const arrived = now();
        for (const [cursor, sentAt] of changesOf(frame, event.length)) {
          delivered += 1;
          latencies.push(arrived - sentAt);
          if (cursor <= last) outOfOrder += 1;
          last = cursor;
        }
        return;
      }
      if (frame[0] === 0x32) return send("3");  // Engine.IO ping -> pong
      if (frame[0] === 0x30) {  // Engine.IO open -> Socket.IO namespace connect
        return send(`40${ns},` + JSON.stringify(authOf(index, opts) ?? {}));
      }
      const text = frame.toString("utf8");
      if (text.startsWith(`40${ns},`)) {  // connected
        client.connected = true;
        if (!opts.subscribe) { clearTimeout(timer); return resolve(client); }
        return send(`42${ns},1` + JSON.stringify(["subscribe", subscriptionOf(index, opts)]));
      }
      if (text.startsWith(`44${ns},`)) return fail(text);  // connect_error
      if (text.startsWith(`43${ns},1`)) {  // the subscribe's ack
        const [ack] = JSON.parse(text.slice(`43${ns},1`.length));
        if (ack.error) return fail(ack.error);
        clearTimeout(timer);
        resolve(client);
      }
    }

    sock.on("data", (chunk) => {
      buffer = buffer ? Buffer.concat([buffer, chunk]) : chunk;
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.toString("latin1", 0, end);
        if (!head.startsWith("HTTP/1.1 101")) return fail(head.split("\r\n")[0]);
        upgraded = true;
        buffer = buffer.subarray(end + 4);
      }
      while (buffer.length >= 2) {  // server frames: unmasked, never fragmented here
        let length = buffer[1] & 0x7f;
        let start = 2;
        if (length === 126) {
          if (buffer.length < 4) break;
          length = buffer.readUInt16BE(2);
          start = 4;
        } else if (length === 127) {
          if (buffer.length < 10) break;
          length = Number(buffer.readBigUInt64BE(2));
          start = 10;
        }
        if (buffer.length < start + length) break;
        const first = buffer[0];
        const payload = buffer.subarray(start, start + length);
        buffer = buffer.subarray(start + length);
        const opcode = first & 0x0f;
        if (opcode === 1 || opcode === 2) message(textOf(payload, (first & 0x40) !== 0));
        else if (opcode === 8) sock.end();
      }
      if (!buffer.length) buffer = null;
    });
  });
}

async function connect(opts) {
  const batch = opts.batch || 50;  // do not stampede the accept loop
  for (let i = 0; i < opts.clients; i += batch) {
    const group = [];
    for (let j = i; j < Math.min(opts.clients, i + batch); j++) {
      group.push(opts.client === "raw" ? openRaw(j, opts) : open(j, opts));
    }
    sockets.push(...(await Promise.all(group)));
  }
  send({ ready: sockets.length });
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// Count the changes each view client's events delivered so far. An event whose cursor is
// past the last known commit waits for the next report (its changes may be unknown yet).
function countViews() {
  const known = commits.length ? commits[commits.length - 1][0] : -1;
  for (const [index, list] of arrivals) {
    let k = counted.get(index) || 0;
    let used = 0;
    for (const [cursor, at] of list) {
      if (cursor > known) break;
      const last = lastSeen.get(index);
      if (last !== undefined && cursor <= last) outOfOrder += 1;
      lastSeen.set(index, cursor);
      for (; k < commits.length && commits[k][0] <= cursor; k++) {
        delivered += 1;
        latencies.push(at - commits[k][1]);
      }
      used += 1;
    }
    counted.set(index, k);
    list.splice(0, used);
  }
}

function histogram(sorted) {
  const counts = {};
  for (const ms of sorted) {
    const key = Math.round(ms * 10);
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}

function report() {
  countViews();
  const sorted = Float64Array.from(latencies).sort();
  send({
    histogram: histogram(sorted),
    delivered, out_of_order: outOfOrder,
    p50_ms: percentile(sorted, 50), p99_ms: percentile(sorted, 99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    connected: sockets.filter((s) => s.connected).length,
  });
  latencies = []; delivered = 0; outOfOrder = 0;
}

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const [command, ...rest] = line.split(" ");
  try {
    if (command === "connect") await connect(JSON.parse(rest.join(" ")));
    else if (command === "commits") commits = JSON.parse(rest.join(" "));
    else if (command === "report") report();
    else if (command === "quit") {
      sockets.forEach((s) => s.disconnect());
      process.exit(0);
    }
  } catch (err) {
    send({ error: String(err) });
  }
});
