// The dashboard's table body: shows exactly the page the server says (ids in order),
// from a map of id -> user, with rows built from the page's <template>. Rows that
// changed flash, a row that leaves the page fades out, one that arrives slides in.
import { flash } from "./dom.js";
import { cell, describe } from "./format.js";

const LEAVE_MS = 600;

export class UsersTable {
  constructor(tbody, template) {
    this.tbody = tbody;
    this.template = template;
    this.users = new Map();  // id -> user, for the ids on the page
    this.editing = {};  // user id -> names of who has its edit form open
  }

  /** The ids of the rows shown (not those fading out), in order. */
  shownIds() {
    return [...this.tbody.querySelectorAll("tr[data-id]")].map((tr) => Number(tr.dataset.id));
  }

  /**
   * Show the page `ids`, taking users from `rows` (the new or changed ones) and the map.
   * `changes` (when the server says what caused this page) name who changed which row.
   * With `animate` false the body is simply replaced (another view's first page).
   * Returns false, changing nothing, when a user of `ids` is known nowhere.
   */
  render(ids, rows, { changes = null, animate = true } = {}) {
    const users = new Map(ids.map((id) => [id, this.users.get(id)]));
    for (const user of rows) if (users.has(user.id)) users.set(user.id, user);
    if ([...users.values()].some((user) => !user)) return false;
    this.users = users;

    const causes = new Map();
    for (const change of changes ?? []) causes.set(change.id, change);
    if (!animate) {
      this.tbody.replaceChildren(...ids.map((id) => this.build(users.get(id))));
      return true;
    }
    const current = new Map();
    for (const tr of this.tbody.querySelectorAll("tr[data-id]")) {
      current.set(Number(tr.dataset.id), tr);
    }
    for (const [id, tr] of current) if (!users.has(id)) this.leave(tr);

    const wanted = ids.map((id) => {
      const user = users.get(id);
      let tr = current.get(id);
      const arriving = !tr;
      const changed = !arriving && Number(tr.dataset.version) !== user.version;
      if (arriving) tr = this.build(user);
      else if (changed) this.fill(tr, user);
      const cause = causes.get(id);
      if (changed || (arriving && cause)) {
        tr.title = cause ? describe(cause) : `changed (now version ${user.version})`;
        flash(tr, "changed");
      } else if (arriving) {
        flash(tr, "entering");
      }
      return tr;
    });
    this.arrange(wanted);
    return true;
  }

  /** Put the rows in order, leaving the ones fading out where they are. */
  arrange(wanted) {
    let next = this.tbody.firstElementChild;
    for (const tr of wanted) {
      while (next && next.classList.contains("leaving")) next = next.nextElementSibling;
      if (next === tr) {
        next = next.nextElementSibling;
      } else {
        this.tbody.insertBefore(tr, next);
      }
    }
  }

  leave(tr) {
    // No longer a row of the page: it keeps its id only as data-leaving-id while it fades.
    tr.dataset.leavingId = tr.dataset.id;
    delete tr.dataset.id;
    tr.classList.remove("changed", "entering");
    tr.classList.add("leaving");
    setTimeout(() => tr.remove(), LEAVE_MS);
  }

  build(user) {
    const tr = this.template.content.firstElementChild.cloneNode(true);
    this.fill(tr, user);
    return tr;
  }

  fill(tr, user) {
    tr.dataset.id = user.id;
    tr.dataset.version = user.version;
    for (const td of tr.querySelectorAll("td[data-field]")) {
      const { text, value } = cell(td.dataset.field, user[td.dataset.field]);
      td.dataset.value = value;
      td.textContent = text;
    }
    for (const link of tr.querySelectorAll("[data-href-template]")) {
      link.href = link.dataset.hrefTemplate.replace("__ID__", user.id);
    }
    this.markEditing(tr);
  }

  /** Who has which user's edit form open (the presence event's `editing`). */
  setEditing(editing) {
    this.editing = editing;
    for (const tr of this.tbody.querySelectorAll("tr[data-id]")) this.markEditing(tr);
  }

  markEditing(tr) {
    const names = this.editing[tr.dataset.id] || [];
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

  /** The viewer stopped being an admin: no more Edit and Delete links. */
  dropActions() {
    for (const root of [this.tbody, this.template.content]) {
      for (const link of root.querySelectorAll("td.actions a")) link.remove();
    }
  }
}
