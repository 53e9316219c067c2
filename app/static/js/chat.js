// The chat page: rooms with history and presence, private messages (namespace /chat).
// Every message is rendered with textContent: user text never becomes markup.
import { io } from "/vendor/socket.io.esm.min.js";

const root = document.getElementById("chat");
const me = root.dataset.username;
const $ = (id) => document.getElementById(id);
const statusLine = $("chat-status");
const messageInput = $("message-input");
const messageButton = document.querySelector("#message-form button");

// ackTimeout + retries: an unacknowledged message is sent again (same id) after a
// reconnect; the server stores and delivers it once.
const socket = io("/chat", { ackTimeout: 5000, retries: 5 });

const rooms = new Map(); // room -> {messages: [], users: []}
let current = null;
const seen = new Set(); // message ids already shown

function newId() {
  return globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeOf(ts) {
  return ts ? new Date(ts).toLocaleTimeString() : "";
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("rt-error", isError);
}

function messageItem(message) {
  const item = el("li", message.user === me ? "rt-msg mine" : "rt-msg");
  item.dataset.id = message.id;
  item.append(el("time", "rt-time", timeOf(message.ts)), " ");
  const who = message.to ? `${message.user} → ${message.to}` : message.user;
  item.append(el("b", "rt-user", who), " ", el("span", "rt-text", message.text));
  return item;
}

function renderRoom() {
  const log = $("messages");
  log.replaceChildren();
  const state = current && rooms.get(current);
  $("presence-room").textContent = current ?? "no room";
  $("presence").replaceChildren(...(state?.users ?? []).map((u) => el("li", null, u)));
  messageInput.disabled = messageButton.disabled = !state;
  if (!state) return;
  for (const entry of state.messages) {
    log.append(entry.status ? el("li", "rt-note", entry.status) : messageItem(entry));
  }
  log.scrollTop = log.scrollHeight;
}

function renderTabs() {
  const tabs = $("room-tabs");
  tabs.replaceChildren();
  for (const room of rooms.keys()) {
    const tab = el("span", room === current ? "rt-tab current" : "rt-tab");
    const pick = el("button", "btn small", room);
    pick.type = "button";
    pick.setAttribute("role", "tab");
    pick.setAttribute("aria-selected", String(room === current));
    pick.addEventListener("click", () => { current = room; renderTabs(); renderRoom(); });
    const close = el("button", "btn small ghost", "×");
    close.type = "button";
    close.title = `Leave ${room}`;
    close.addEventListener("click", () => leave(room));
    tab.append(pick, close);
    tabs.append(tab);
  }
}

function addToRoom(room, entry) {
  const state = rooms.get(room);
  if (!state) return;
  if (entry.id !== undefined) {
    if (seen.has(entry.id)) return;
    seen.add(entry.id);
  }
  state.messages.push(entry);
  if (state.messages.length > 500) state.messages.shift();
  if (room === current) renderRoom();
}

function addPrivate(message) {
  if (seen.has(message.id)) return;
  seen.add(message.id);
  const log = $("private-log");
  log.append(messageItem(message));
  log.scrollTop = log.scrollHeight;
}

// The acknowledgement of an event, or an error answer once the retries are spent.
async function ask(event, payload) {
  try {
    return await socket.emitWithAck(event, payload);
  } catch {
    return { error: `no answer from the server to ${event}` };
  }
}

async function join(room) {
  const answer = await ask("join", { room });
  if (answer.error) return setStatus(answer.error, true);
  const state = { messages: [], users: answer.users };
  rooms.set(room, state);
  for (const message of answer.history) seen.delete(message.id);
  current = room;
  answer.history.forEach((message) => addToRoom(room, message));
  renderTabs();
  renderRoom();
  setStatus(`In ${room}`);
}

async function leave(room) {
  const answer = await ask("leave", { room });
  if (answer.error) setStatus(answer.error, true);
  rooms.delete(room);
  if (current === room) current = rooms.keys().next().value ?? null;
  renderTabs();
  renderRoom();
}

socket.on("connect", () => {
  setStatus(`Connected as ${me}`);
  // The server forgets room memberships with the connection: join them again.
  for (const room of [...rooms.keys()]) join(room);
});
socket.on("disconnect", () => setStatus("Disconnected, reconnecting…", true));
socket.on("connect_error", (err) => setStatus(`Cannot connect: ${err.message}`, true));
socket.on("message", (message) => addToRoom(message.room, message));
socket.on("private", addPrivate);
socket.on("status", ({ room, text }) => { if (room) addToRoom(room, { status: text }); });
socket.on("presence", ({ room, users }) => {
  const state = rooms.get(room);
  if (!state) return;
  state.users = users;
  if (room === current) renderRoom();
});
socket.on("error", (answer) => setStatus(answer.error ?? "error", true));

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("room-input").value.trim());
});

$("message-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = messageInput.value;
  if (!current || !text.trim()) return;
  messageInput.value = "";
  const answer = await ask("message", { room: current, text, id: newId() });
  if (answer.error) {
    setStatus(answer.error, true);
    messageInput.value = text;
  }
});

$("private-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const to = form.elements.to.value.trim();
  const text = form.elements.text.value;
  const answer = await ask("private", { to, text, id: newId() });
  if (answer.error) return setStatus(answer.error, true);
  form.elements.text.value = "";
  addPrivate(answer.message);
});

renderRoom();
