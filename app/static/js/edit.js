// The edit form, live: says who else has it open, shows changes made to this user by
// anyone else (which fields, old and new values) before its owner saves, and turns
// read-only at once if its owner stops being an admin.
import { LiveFeed, renderBadge } from "./live.js";

const form = document.getElementById("edit-form");
const notice = document.getElementById("live-notice");
const userId = Number(form.dataset.userId);
const formVersion = Number(form.dataset.version);
const FIELDS = ["username", "email", "role", "active"];

function show(kind, title, lines) {
  const heading = document.createElement("strong");
  heading.textContent = title;
  const list = document.createElement("ul");
  for (const line of lines) {
    const li = document.createElement("li");
    li.textContent = line;
    list.append(li);
  }
  const block = document.createElement("div");
  block.className = `live-${kind}`;
  block.append(heading, list);
  notice.append(block);
  notice.className = "alert alert-conflict";
  notice.hidden = false;
}

function fmt(field, value) {
  return field === "active" ? (value ? "yes" : "no") : String(value);
}

function onChanges(changes) {
  for (const change of changes) {
    if (change.id !== userId) continue;
    const who = change.actor ? `${change.actor} (${change.origin})` : change.origin;
    if (change.op === "delete") {
      show("deleted", `This user was deleted by ${who}.`, ["Saving will fail."]);
      lockForm();
      continue;
    }
    const lines = Object.keys(change.before).map(
      (f) => `${f}: ${fmt(f, change.before[f])} → ${fmt(f, change.row[f])}`);
    show("changed", `Changed by ${who} (now version ${change.row.version}). ` +
      "Saving will be refused as a conflict; reload to edit the new values.",
      lines.length ? lines : ["other fields (for example the password)"]);
  }
}

function lockForm(reason) {
  for (const el of form.querySelectorAll("input, select, button, textarea")) {
    if (el.type !== "hidden") el.disabled = true;
  }
  form.classList.add("read-only");
  if (reason) show("locked", reason, []);
}

const others = document.createElement("p");
others.className = "editing-others";
notice.before(others);

function onWatch(row) {
  if (!row) {
    show("deleted", "This user no longer exists.", []);
    lockForm();
  } else if (row.version !== formVersion && !document.getElementById("conflict")) {
    const current = (f) => (form.elements[f].type === "checkbox"
      ? form.elements[f].checked : form.elements[f].value);
    const lines = FIELDS.filter((f) => form.elements[f] && fmt(f, row[f]) !== fmt(f, current(f)))
      .map((f) => `${f}: now ${fmt(f, row[f])}`);
    show("changed", `This user changed since the form was loaded (now version ${row.version}).`,
      lines);
  }
}

new LiveFeed({
  onChanges,
  onWatch,
  onPresence: ({ editing }) => {
    const names = (editing[String(userId)] || []).filter((n) => n !== form.dataset.me);
    others.textContent = names.length ? `Also open in an edit form: ${names.join(", ")}` : "";
  },
  onPermissions: ({ role, active }) => {
    if (role !== "admin" || !active) lockForm("You are no longer an admin: this form is read-only.");
  },
  onState: (s) => {
    const badge = document.getElementById("live-badge");
    if (badge) renderBadge(badge, s);
  },
}, { watch: userId });
