// The chat page: rooms with history and presence, private messages (namespace /chat).
// Every message is rendered with textContent: user text never becomes markup.
import { io } from "/vendor/socket.io.esm.min.js";
import { retryAfterServerClose, retryIfUnavailable } from "./reconnect.js";

const root = document.getElementById("chat");
const me = root.dataset.username;
const $ = (id) => document.getElementById(id);
const statusLine = $("chat-status");
const messageInput = $("message-input");
const messageButton = document.querySelector("#message-form button");

// ackTimeout + retries: an unacknowledged message is sent again (same id) after a
// reconnect; the server stores and delivers it once.
const socket = io("/chat", { ackTimeout: 5000, retries: 5 });

const rooms = new Map(); // room -> {messages: [], users: [], lastSeq}
let current = null;
const seen = new Set(); // message ids already shown
const privates = []; // private messages shown, in id order
// Every message has a seq, 1, 2, 3... in its room or private conversation: a jump means
// something was missed (a dropped event), so the history is fetched again.
const conversations = new Map(); // peer -> last seq seen with them
const fetching = new Set(); // rooms and "@peer"s whose history is being fetched

// What this tab had open, kept over a reload: its rooms and the people it wrote with.
const saved = {
  key: (name) => `chat:${me}:${name}`,
  load(name) {
    try {
      const value = JSON.parse(sessionStorage.getItem(this.key(name)) ?? "[]");
      return Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
    } catch {
      return [];
    }
  },
  store(name, values) {
    sessionStorage.setItem(this.key(name), JSON.stringify([...values]));
  },
};
const peers = new Set(saved.load("peers"));

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

let okStatus = ""; // what the line says again once an error is behind us

function setStatus(text, isError = false) {
  if (!isError) okStatus = text;
  statusLine.textContent = text;
  statusLine.classList.toggle("rt-error", isError);
}

const clearError = () => setStatus(okStatus);

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

// Put a message among the others in seq order (status notes stay where they were).
function insertInOrder(list, message) {
  const at = list.findIndex((entry) => entry.seq !== undefined && entry.seq > message.seq);
  if (at === -1) list.push(message);
  else list.splice(at, 0, message);
}

// Whether ``seq`` skips numbers after ``last`` (the first message seen proves nothing).
const skips = (last, seq) => last !== undefined && seq !== undefined && seq > last + 1;

function addToRoom(room, entry) {
  const state = rooms.get(room);
  if (!state) return;
  if (entry.id !== undefined) {
    if (seen.has(entry.id)) return;
    seen.add(entry.id);
    if (skips(state.lastSeq, entry.seq)) refetchRoom(room);
    state.lastSeq = Math.max(state.lastSeq ?? 0, entry.seq ?? 0);
    insertInOrder(state.messages, entry);
  } else {
    state.messages.push(entry);
  }
  if (state.messages.length > 500) state.messages.shift();
  if (room === current) renderRoom();
}

async function refetchRoom(room) {
  if (fetching.has(room)) return;
  fetching.add(room);
  try {
    const answer = await ask("history", { room });
    if (!answer.error) answer.messages.forEach((message) => addToRoom(room, message));
  } finally {
    fetching.delete(room);
  }
}

async function refetchPrivate(peer) {
  const key = `@${peer}`;
  if (fetching.has(key)) return;
  fetching.add(key);
  try {
    const answer = await ask("history", { with: peer });
    if (!answer.error) answer.messages.forEach(addPrivate);
  } finally {
    fetching.delete(key);
  }
}

function addPrivate(message) {
  if (seen.has(message.id)) return;
  seen.add(message.id);
  const peer = message.user === me ? message.to : message.user;
  if (peer && !peers.has(peer)) {
    peers.add(peer);
    saved.store("peers", peers);
  }
  if (peer) {
    const last = conversations.get(peer);
    if (skips(last, message.seq)) refetchPrivate(peer);
    conversations.set(peer, Math.max(last ?? 0, message.seq ?? 0));
  }
  privates.push(message);
  privates.sort((a, b) => a.id - b.id);
  if (privates.length > 500) privates.shift();
  const log = $("private-log");
  log.replaceChildren(...privates.map(messageItem));
  log.scrollTop = log.scrollHeight;
}

// After a reload: the conversations with everyone this tab wrote with.
async function loadPrivateHistory() {
  for (const peer of [...peers]) {
    const answer = await ask("history", { with: peer });
    if (answer.error) {
      peers.delete(peer); // gone since: forget them
      saved.store("peers", peers);
      continue;
    }
    answer.messages.forEach(addPrivate);
  }
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
  // The history goes up to the last message not sent live since the join: from here
  // on, the seq of the room's messages goes on from it without a gap.
  const state = { messages: [], users: answer.users, lastSeq: undefined };
  rooms.set(room, state);
  for (const message of answer.history) seen.delete(message.id);
  current = room;
  answer.history.forEach((message) => addToRoom(room, message));
  state.lastSeq = Math.max(state.lastSeq ?? 0, ...answer.history.map((m) => m.seq));
  saved.store("rooms", rooms.keys());
  renderTabs();
  renderRoom();
  setStatus(`In ${room}`);
}

async function leave(room) {
  const answer = await ask("leave", { room });
  if (answer.error) setStatus(answer.error, true);
  rooms.delete(room);
  saved.store("rooms", rooms.keys());
  if (current === room) current = rooms.keys().next().value ?? null;
  renderTabs();
  renderRoom();
}

let firstConnect = true;
socket.on("connect", () => {
  setStatus(`Connected as ${me}`);
  // The server forgets room memberships with the connection: join them again (after a
  // reload, the rooms this tab had open); their history, and the conversations',
  // bring what was said while this tab was away.
  const again = firstConnect ? saved.load("rooms") : [...rooms.keys()];
  for (const room of again) join(room);
  loadPrivateHistory();
  firstConnect = false;
});
const retryClosed = retryAfterServerClose(socket);
socket.on("disconnect", (reason) => {
  const final = reason === "io server disconnect" && !retryClosed(reason);
  setStatus(final ? "Disconnected by the server" : "Disconnected, reconnecting…", true);
});
socket.on("connect_error", (err) => {
  setStatus(`Cannot connect: ${err.message}`, true);
  retryIfUnavailable(socket, err);
});
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
  } else {
    clearError();
  }
});

$("private-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const to = form.elements.to.value.trim();
  const text = form.elements.text.value;
  const answer = await ask("private", { to, text, id: newId() });
  if (answer.error) return setStatus(answer.error, true);
  clearError();
  form.elements.text.value = "";
  addPrivate(answer.message);
});

renderRoom();
