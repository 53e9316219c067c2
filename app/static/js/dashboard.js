// The live users dashboard: applies each change to the table the page rendered,
// respecting its search, filters, sort and page; keeps counters, a changes-per-minute
// chart, presence and an activity list. Everything is rendered with DOM operations.
import { LiveFeed, renderBadge } from "./live.js";

const root = document.getElementById("dashboard");
const view = {
  q: (root.dataset.q || "").toLowerCase(),
  role: root.dataset.role || "",
  active: root.dataset.active || "",
  sort: root.dataset.sort || "username",
  page: Number(root.dataset.page || 1),
  perPage: Number(root.dataset.perPage || 20),
  total: Number(root.dataset.total || 0),
};
const tbody = document.querySelector("#users-table tbody");
const template = document.getElementById("row-template");
const badge = document.getElementById("live-badge");
const chart = document.getElementById("changes-chart");
const counters = {};
for (const el of document.querySelectorAll("[data-counter]")) {
  counters[el.dataset.counter] = Number(el.textContent);
}
const perMinute = new Array(60).fill(0);
let minuteNow = Math.floor(Date.now() / 60000);
let editing = {};

function matches(row) {
  if (!row) return false;
  if (view.q && !row.username.toLowerCase().includes(view.q)
      && !row.email.toLowerCase().includes(view.q)) return false;
  if (view.role && row.role !== view.role) return false;
  if (view.active === "yes" && !row.active) return false;
  if (view.active === "no" && row.active) return false;
  return true;
}

function sortKey(row) {
  const field = view.sort.replace(/^-/, "");
  const value = row[field];
  return typeof value === "string" ? value.toLowerCase() : value;
}

function compare(a, b) {
  const ka = sortKey(a), kb = sortKey(b);
  const order = ka < kb ? -1 : ka > kb ? 1 : a.id - b.id;
  return view.sort.startsWith("-") ? -order : order;
}

function rowData(tr) {
  const data = { id: Number(tr.dataset.id), version: Number(tr.dataset.version) };
  for (const td of tr.querySelectorAll("td[data-field]")) {
    const value = td.dataset.value ?? td.textContent;
    data[td.dataset.field] = td.dataset.field === "active" ? value === "true" : value;
  }
  return data;
}

function fill(tr, row) {
  tr.dataset.id = row.id;
  tr.dataset.version = row.version;
  for (const td of tr.querySelectorAll("td[data-field]")) {
    const field = td.dataset.field;
    let value = row[field];
    td.dataset.value = field === "active" ? String(value) : value;
    if (field === "active") value = value ? "yes" : "no";
    if (field === "updated_at") value = value.replace("T", " ").slice(0, 19);
    td.textContent = value;
  }
  for (const link of tr.querySelectorAll("[data-href-template]")) {
    link.href = link.dataset.hrefTemplate.replace("__ID__", row.id);
  }
  markEditing(tr);
}

function newRow(row) {
  const tr = template.content.firstElementChild.cloneNode(true);
  fill(tr, row);
  return tr;
}

function highlight(tr, change) {
  tr.classList.remove("changed");
  void tr.offsetWidth;  // restart the animation
  tr.classList.add("changed");
  tr.title = describe(change);
}

function describe(change) {
  const who = change.actor ? `${change.actor} (${change.origin})` : `${change.origin}`;
  return `${change.op} by ${who}`;
}

function place(tr, row) {
  // Insert at the sorted position among the rows of this page.
  for (const other of tbody.querySelectorAll("tr[data-id]")) {
    if (other !== tr && compare(row, rowData(other)) < 0) {
      tbody.insertBefore(tr, other);
      return;
    }
  }
  tbody.appendChild(tr);
}

function fitsThisPage(row) {
  const rows = [...tbody.querySelectorAll("tr[data-id]")];
  const lastPage = view.page * view.perPage >= view.total;
  if (rows.length < view.perPage && lastPage) return true;
  if (!rows.length) return view.page === 1;
  const first = rowData(rows[0]), last = rowData(rows[rows.length - 1]);
  return (view.page === 1 || compare(row, first) >= 0) && (compare(row, last) <= 0 || lastPage);
}

function trimPage() {
  const rows = tbody.querySelectorAll("tr[data-id]");
  for (let i = view.perPage; i < rows.length; i++) rows[i].remove();
}

function applyChange(change) {
  // An update's `before` holds only the fields it changed.
  const before = change.op === "update" ? { ...change.row, ...change.before } : change.before;
  const tr = tbody.querySelector(`tr[data-id="${change.id}"]`);
  const was = matches(before) || (tr !== null);
  const now = matches(change.row);
  if (tr && Number(tr.dataset.version) >= (change.row?.version ?? Infinity)) return;
  if (was && !now) view.total -= 1;
  if (!was && now) view.total += 1;
  if (tr && !now) {
    tr.classList.add("leaving");
    setTimeout(() => tr.remove(), 600);
  } else if (tr && now) {
    fill(tr, change.row);
    place(tr, change.row);
    highlight(tr, change);
  } else if (now && fitsThisPage(change.row)) {
    const created = newRow(change.row);
    place(created, change.row);
    trimPage();
    highlight(created, change);
  }
  count(before, -1);
  count(change.row, +1);
  logActivity(change);
}

function count(row, sign) {
  if (!row) return;
  counters.total += sign;
  if (row.active) counters.active += sign;
  if (row.role === "admin" && row.active) counters.admins += sign;
}

function renderCounts() {
  for (const [name, value] of Object.entries(counters)) {
    const el = document.querySelector(`[data-counter="${name}"]`);
    if (el) el.textContent = value;
  }
  root.dataset.total = view.total;
  const summary = document.getElementById("result-count");
  if (summary) summary.textContent = `${view.total} matching user${view.total === 1 ? "" : "s"}`;
  const empty = document.getElementById("empty-state");
  if (empty) empty.hidden = tbody.querySelector("tr[data-id]") !== null;
}

function onSnapshot(rows) {
  // A full snapshot (the change log no longer reaches our cursor): rebuild the view.
  const visible = rows.filter(matches).sort(compare);
  view.total = visible.length;
  const start = (view.page - 1) * view.perPage;
  tbody.replaceChildren(...visible.slice(start, start + view.perPage).map(newRow));
  counters.total = rows.length;
  counters.active = rows.filter((r) => r.active).length;
  counters.admins = rows.filter((r) => r.active && r.role === "admin").length;
  renderCounts();
}

function onChanges(changes) {
  for (const change of changes) {
    applyChange(change);
    tick(1);
  }
  renderCounts();
  drawChart();
}

// --- activity, presence, chart ---------------------------------------------------------

function logActivity(change) {
  let list = document.getElementById("activity");
  if (!list) {
    list = document.createElement("ol");
    list.id = "activity";
    list.className = "activity";
    const panel = document.createElement("div");
    panel.className = "panel";
    const title = document.createElement("h2");
    title.className = "panel-title";
    title.textContent = "Recent changes";
    panel.append(title, list);
    document.querySelector(".panels")?.append(panel);
  }
  const item = document.createElement("li");
  const name = change.row?.username ?? change.before?.username ?? `#${change.id}`;
  const changed = change.op === "update" ? Object.keys(change.before) : [];
  const fields = changed.length ? ` (${changed.join(", ")})` : "";
  item.textContent = `${name}: ${describe(change)}${fields}`;
  list.prepend(item);
  while (list.children.length > 8) list.lastElementChild.remove();
}

function onPresence({ viewers, editing: now }) {
  const list = document.getElementById("viewers");
  list.replaceChildren(...viewers.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    return li;
  }));
  editing = now;
  for (const tr of tbody.querySelectorAll("tr[data-id]")) markEditing(tr);
}

function markEditing(tr) {
  const names = editing[tr.dataset.id] || [];
  let tag = tr.querySelector(".editing");
  if (!names.length) {
    tag?.remove();
    return;
  }
  if (!tag) {
    tag = document.createElement("span");
    tag.className = "editing";
    tr.querySelector("td[data-field=username]").append(tag);
  }
  tag.textContent = ` ✎ ${names.join(", ")}`;
}

function tick(n) {
  const minute = Math.floor(Date.now() / 60000);
  const shift = Math.min(60, minute - minuteNow);
  if (shift > 0) {
    perMinute.splice(0, shift);
    perMinute.push(...new Array(shift).fill(0));
    minuteNow = minute;
  }
  perMinute[59] += n;
}

function drawChart() {
  if (!chart?.getContext) return;
  const ctx = chart.getContext("2d");
  const max = Math.max(1, ...perMinute);
  const width = chart.width / perMinute.length;
  ctx.clearRect(0, 0, chart.width, chart.height);
  ctx.fillStyle = getComputedStyle(chart).color || "#3b6fd8";
  perMinute.forEach((value, i) => {
    const height = (value / max) * (chart.height - 2);
    ctx.fillRect(i * width, chart.height - height, Math.max(1, width - 1), height);
  });
  chart.title = `${perMinute[59]} changes this minute, ${perMinute.reduce((a, b) => a + b)} in the last hour`;
}

async function loadStats() {
  const response = await fetch("/live/stats", { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const stats = await response.json();
  perMinute.splice(0, 60, ...stats.per_minute);
  minuteNow = Math.floor(Date.parse(stats.now) / 60000);
  drawChart();
}

const feed = new LiveFeed(
  { onChanges, onSnapshot, onPresence, onState: (s) => renderBadge(badge, s) },
  { since: Number(root.dataset.cursor) },
);
window.liveFeed = feed;  // for people poking at the page from the console
loadStats();
setInterval(() => { tick(0); drawChart(); }, 30000);
