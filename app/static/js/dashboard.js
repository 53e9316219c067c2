// The live users dashboard. The server keeps the page exact (a live view: search,
// filters, sort, page); this script shows what it says, switches views on the same
// socket without reloading (the URL follows, back and forward work), and shows the
// server's counters, the change rate, recent changes and who is watching.
import { ChangeChart } from "./chart.js";
import { h } from "./dom.js";
import { activityText, resultText } from "./format.js";
import { LiveFeed, renderBadge } from "./live.js";
import { UsersTable } from "./table.js";
import {
  defaults, fromSearch, normalize, pageNumbers, sameView, toSearch, toSubscribe, toggledSort,
} from "./views.js";

const SEARCH_DELAY_MS = 250;
const ACTIVITY_MAX = 8;

const root = document.getElementById("dashboard");
const base = defaults(Number(root.dataset.defaultPerPage) || 20);
const filters = document.getElementById("view-form");
const controls = {
  q: filters.elements.q, role: filters.elements.role, active: filters.elements.active,
  per_page: filters.elements.per_page,
};
const table = new UsersTable(document.querySelector("#users-table tbody"),
                             document.getElementById("row-template"));
const chart = new ChangeChart(document.getElementById("changes-chart"));
const nav = document.querySelector("nav.pagination");
const summary = document.getElementById("result-count");

let view = normalize(JSON.parse(root.dataset.view || "{}"), base);
let shownView = view;  // the view whose page the table shows: the server rendered this one
let total = Number(root.dataset.total || 0);

function url(v) {
  return `${location.pathname}${toSearch(v, base)}`;
}

/** Show another view: the same socket subscribes to it; the URL follows. */
function go(next, { push = true } = {}) {
  if (sameView(next, view)) return;
  view = next;
  if (push) history.pushState({ view }, "", url(view));
  showView();
  root.setAttribute("aria-busy", "true");
  feed.follow(toSubscribe(view));
}

// --- what the server sends ---------------------------------------------------------------

function onPage(page, { ack }) {
  let animate = true;
  if (ack) {
    const used = normalize(page.view ?? view, base);  // per_page clamped, say
    if (!sameView(used, view)) {
      view = used;
      history.replaceState({ view }, "", url(view));
      showView();
    }
    animate = sameView(shownView, view);  // the same page, resent or first rendered here
  }
  if (!table.render(page.ids, page.rows, { changes: page.changes, animate })) {
    feed.follow(toSubscribe(view));  // a row we were never sent: ask for the whole page
    return;
  }
  shownView = view;
  total = page.total;
  root.dataset.total = total;
  root.removeAttribute("aria-busy");
  showPage();
}

function onCounts({ counts, changes, recent }) {
  for (const [name, value] of Object.entries(counts ?? {})) {
    const el = root.querySelector(`[data-counter="${name}"]`);
    if (el) el.textContent = value;
  }
  chart.add(changes || 0);
  const list = document.getElementById("activity");
  for (const change of recent ?? []) {  // oldest first: the newest ends on top
    const href = list.dataset.historyTemplate.replace("__ID__", change.id);
    list.prepend(h("li", { title: change.at ?? null }, h("a", { href }, activityText(change))));
  }
  while (list.children.length > ACTIVITY_MAX) list.lastElementChild.remove();
}

function onViewError(reason) {
  root.removeAttribute("aria-busy");
  summary.textContent = `This view cannot be shown live: ${reason}`;
}

function onPresence({ viewers, editing }) {
  document.getElementById("viewers").replaceChildren(...viewers.map((name) => h("li", {}, name)));
  table.setEditing(editing);
}

function onPermissions({ role, active }) {
  if (role === "admin" && active) return;
  table.dropActions();
  document.getElementById("new-user")?.remove();
}

// --- rendering the view's controls and the page's links ----------------------------------

function showView() {
  if (controls.q.value.trim() !== view.q) controls.q.value = view.q;
  controls.role.value = view.role ?? "";
  controls.active.value = view.active === null ? "" : String(view.active);
  const perPage = String(view.per_page);
  if (![...controls.per_page.options].some((o) => o.value === perPage)) {
    controls.per_page.append(h("option", { value: perPage }, `${perPage} per page`));
  }
  controls.per_page.value = perPage;
  const lead = view.sort.split(",")[0];
  for (const th of root.querySelectorAll("th[data-sort-field]")) {
    const field = th.dataset.sortField;
    const link = th.querySelector("a");
    link.href = url({ ...view, sort: toggledSort(view.sort, field), page: 1 });
    link.querySelector(".sort-arrow")?.remove();
    if (lead.replace(/^-/, "") === field) {
      const descending = lead.startsWith("-");
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      link.append(h("span", { class: "sort-arrow", "aria-hidden": "true" },
                    descending ? " ▼" : " ▲"));
    } else {
      th.removeAttribute("aria-sort");
    }
  }
}

function showPage() {
  const shown = table.shownIds().length;
  summary.textContent = resultText(total, view.page, view.per_page, shown);
  document.getElementById("empty-state").hidden = shown > 0;
  const pages = Math.ceil(total / view.per_page);
  nav.hidden = pages <= 1;
  if (nav.hidden) {
    nav.replaceChildren();
    return;
  }
  const link = (page, text, rel = null) => h("a", {
    class: "btn small", href: url({ ...view, page }), rel, dataset: { page },
  }, text);
  const items = [];
  if (view.page > 1) items.push(link(view.page - 1, "‹ Previous", "prev"));
  for (const number of pageNumbers(view.page, pages)) {
    if (number === null) items.push(h("span", { class: "gap" }, "…"));
    else if (number === view.page) {
      items.push(h("span", { class: "btn small current", "aria-current": "page" }, String(number)));
    } else items.push(link(number, String(number)));
  }
  if (view.page < pages) items.push(link(view.page + 1, "Next ›", "next"));
  nav.replaceChildren(...items);
}

// --- the user's input -------------------------------------------------------------------

/** The view the form's controls ask for, from its first page. */
function fromControls() {
  return normalize({
    q: controls.q.value, role: controls.role.value, active: controls.active.value,
    sort: view.sort, page: 1, per_page: controls.per_page.value,
  }, base);
}

let searchTimer = null;
controls.q.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => go(fromControls()), SEARCH_DELAY_MS);
});
for (const select of [controls.role, controls.active]) {
  select.addEventListener("change", () => go(fromControls()));
}
controls.per_page.addEventListener("change", () => {
  const perPage = Number(controls.per_page.value);
  const first = (view.page - 1) * view.per_page;  // keep the page's first row in sight
  go({ ...fromControls(), page: Math.floor(first / perPage) + 1 });
});
filters.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  go(fromControls());
});

/** Follow a link of the page's own (sort, page, reset) without leaving the page. */
function intercept(container, selector, viewFor) {
  container.addEventListener("click", (event) => {
    const link = event.target.closest(selector);
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey
        || event.altKey) return;  // a new tab or window: let the browser have it
    event.preventDefault();
    go(viewFor(link));
  });
}
intercept(root.querySelector("#users-table thead"), "th[data-sort-field] a", (link) => ({
  ...view, sort: toggledSort(view.sort, link.closest("th").dataset.sortField), page: 1,
}));
intercept(nav, "a[data-page]", (link) => ({ ...view, page: Number(link.dataset.page) }));
intercept(filters, "a[data-action=reset]", () => ({ ...base }));

window.addEventListener("popstate", (event) => {
  const next = event.state?.view ? normalize(event.state.view, base)
    : fromSearch(location.search, base);
  go(next, { push: false });
});

// The export follows the view shown now (the address bar holds it).
const exportLink = document.getElementById("export-csv");
exportLink.addEventListener("click", () => { exportLink.search = location.search; });

// --- start ------------------------------------------------------------------------------

history.replaceState({ view }, "", `${url(view)}${location.hash}`);
showView();
root.setAttribute("aria-busy", "true");  // until the first page comes from the socket
const feed = new LiveFeed({
  onPage, onCounts, onViewError, onPresence, onPermissions,
  onResubscribed: () => chart.load(),
  onState: (s) => renderBadge(document.getElementById("live-badge"), s),
}, { view: toSubscribe(view), cursor: Number(root.dataset.cursor) });
window.liveFeed = feed;  // for people poking at the page from the console
chart.load();
