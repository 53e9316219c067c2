// Flask-SocketIO's classic test page, on the /demo namespace.
// Every received message is rendered with textContent, never as markup.
import { io } from "/vendor/socket.io.esm.min.js";

const $ = (id) => document.getElementById(id);
const socket = io("/demo");
const pings = []; // round trips of the last 30 pings, in ms
let pingStart = 0;

function log(text) {
  const item = document.createElement("li");
  item.textContent = text;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

// The transport while connected, "disconnected" otherwise; Disconnect or Reconnect.
function showState() {
  $("transport").textContent = socket.connected
    ? socket.io.engine?.transport?.name ?? "connecting…"
    : "disconnected";
  $("disconnect").hidden = !socket.connected;
  $("reconnect").hidden = socket.connected;
}

socket.on("connect", () => {
  showState();
  socket.io.engine.on("upgrade", showState);
});
socket.on("disconnect", (reason) => { log(`Disconnected: ${reason}`); showState(); });
socket.on("connect_error", (err) => log(`Cannot connect: ${err.message}`));

// The server asks for an acknowledgement on "Disconnected!": answering lets it disconnect us.
socket.on("my_response", (msg, ack) => {
  log(`Received #${msg.count}: ${msg.data}`);
  if (ack) ack();
});
socket.on("error", (answer) => log(`Error: ${answer.error}`));

const rounded = (ms) => (Math.round(10 * ms) / 10).toString();
let pingAsked = false; // the next pong answers the Ping button: log it

function ping() {
  pingStart = performance.now();
  socket.emit("my_ping");
}

setInterval(() => {
  if (socket.connected) ping();
}, 1000);
socket.on("my_pong", () => {
  const roundTrip = performance.now() - pingStart;
  pings.push(roundTrip);
  if (pings.length > 30) pings.shift();
  $("ping-pong").textContent = rounded(pings.reduce((a, b) => a + b, 0) / pings.length);
  if (pingAsked) log(`Pong after ${rounded(roundTrip)} ms`);
  pingAsked = false;
});

// Every form sends one event; while disconnected it says so instead of queueing it.
function on(formId, handler) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    if (!socket.connected && formId !== "reconnect") {
      log("Not connected: press Reconnect first");
      return;
    }
    handler(event.target.elements);
  });
}

on("emit", (f) => socket.emit("my_event", { data: f.data.value }));
on("broadcast", (f) => socket.emit("my_broadcast_event", { data: f.data.value }));
on("join", (f) => socket.emit("join", { room: f.room.value }));
on("leave", (f) => socket.emit("leave", { room: f.room.value }));
on("send-room", (f) => socket.emit("my_room_event", { room: f.room.value, data: f.data.value }));
on("close", (f) => socket.emit("close_room", { room: f.room.value }));
on("disconnect", () => socket.emit("disconnect_request"));
on("reconnect", () => socket.connect());
on("ping", () => {
  pingAsked = true;
  ping();
});
