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

function showTransport() {
  $("transport").textContent = socket.io.engine?.transport?.name ?? "none";
}

socket.on("connect", () => {
  showTransport();
  socket.io.engine.on("upgrade", showTransport);
});
socket.on("disconnect", (reason) => { log(`Disconnected: ${reason}`); showTransport(); });
socket.on("connect_error", (err) => log(`Cannot connect: ${err.message}`));

// The server asks for an acknowledgement on "Disconnected!": answering lets it disconnect us.
socket.on("my_response", (msg, ack) => {
  log(`Received #${msg.count}: ${msg.data}`);
  if (ack) ack();
});
socket.on("error", (answer) => log(`Error: ${answer.error}`));

setInterval(() => {
  if (!socket.connected) return;
  pingStart = performance.now();
  socket.emit("my_ping");
}, 1000);
socket.on("my_pong", () => {
  pings.push(performance.now() - pingStart);
  if (pings.length > 30) pings.shift();
  const average = pings.reduce((a, b) => a + b, 0) / pings.length;
  $("ping-pong").textContent = (Math.round(10 * average) / 10).toString();
});

function on(formId, handler) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
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
