// How the dashboard words things: changes, the result count, table cells.

/** "update by admin (ui)", or "insert by sql" for a writer outside the app. */
export function describe(change) {
  const who = change.actor ? `${change.actor} (${change.origin})` : `${change.origin}`;
  return `${change.op} by ${who}`;
}

/** One line of the "Recent changes" list: "alice: update by admin (ui) (email, role)". */
export function activityText(change) {
  const name = change.row?.username ?? change.before?.username ?? `#${change.id}`;
  // An update's `before` holds only the fields it changed.
  const changed = change.op === "update" && change.before ? Object.keys(change.before) : [];
  const fields = changed.length ? ` (${changed.join(", ")})` : "";
  return `${name}: ${describe(change)}${fields}`;
}

/** "41 matching users · showing 21–40" for a page of `shown` rows. */
export function resultText(total, page, perPage, shown) {
  const text = `${total} matching user${total === 1 ? "" : "s"}`;
  // A page past the end (its users deleted meanwhile) shows nothing: no range to tell.
  if (!total || !shown) return text;
  const first = (page - 1) * perPage + 1;
  return `${text} · showing ${first}–${first + shown - 1}`;
}

/** A user's field as the table shows it, and as its cell's data-value keeps it. */
export function cell(field, value) {
  if (field === "active") return { text: value ? "yes" : "no", value: String(Boolean(value)) };
  if (field === "updated_at" || field === "created_at") {
    return { text: String(value).replace("T", " ").slice(0, 19), value: String(value) };
  }
  return { text: String(value ?? ""), value: String(value ?? "") };
}
