// The dashboard's view (search, filters, sort, page) as the live-view protocol takes it
// and as the page's URL carries it: q, role, active, sort, page, per_page, defaults left out.

export const PER_PAGE_CHOICES = [10, 20, 50, 100];
export const SORTABLE = ["username", "email", "role", "active", "created_at", "updated_at",
                         "id", "version"];
const MAX_INT = 2 ** 31 - 1;
const ROLES = ["admin", "user"];
const BOOLEANS = { true: true, yes: true, false: false, no: false };

/** The dashboard's defaults (its sort differs from the protocol's "id"). */
export function defaults(perPage = 20) {
  return { q: "", role: null, active: null, sort: "username", page: 1, per_page: perPage };
}

function int(raw, fallback, max = MAX_INT) {
  const value = /^\d+$/.test(raw ?? "") ? Number(raw) : NaN;
  return value >= 1 && value <= MAX_INT ? Math.min(value, max) : fallback;
}

function cleanSort(sort, fallback) {
  const keys = String(sort ?? "").split(",").map((k) => k.trim()).filter(Boolean);
  const ok = keys.length && keys.every((k) => SORTABLE.includes(k.replace(/^-/, "")));
  return ok ? keys.join(",") : fallback;
}

/**
 * A complete view (every key; role and active null for "any") from loose input: the
 * page's data-view, the URL's query, the ack's view. Unusable values become defaults.
 */
export function normalize(raw, base = defaults()) {
  const active = typeof raw.active === "boolean" ? raw.active
    : BOOLEANS[String(raw.active ?? "").toLowerCase()] ?? null;
  return {
    q: String(raw.q ?? "").trim().slice(0, 100),
    role: ROLES.includes(raw.role) ? raw.role : null,
    active,
    sort: cleanSort(raw.sort, base.sort),
    page: int(String(raw.page ?? ""), 1),
    per_page: int(String(raw.per_page ?? ""), base.per_page, 100),
  };
}

/** The view from a location's query string. */
export function fromSearch(search, base = defaults()) {
  return normalize(Object.fromEntries(new URLSearchParams(search)), base);
}

/** The query string for a view ("" for the defaults), with a leading "?" when not empty. */
export function toSearch(view, base = defaults()) {
  const params = new URLSearchParams();
  if (view.q) params.set("q", view.q);
  if (view.role) params.set("role", view.role);
  if (view.active !== null) params.set("active", String(view.active));
  if (view.sort !== base.sort) params.set("sort", view.sort);
  if (view.page !== 1) params.set("page", String(view.page));
  if (view.per_page !== base.per_page) params.set("per_page", String(view.per_page));
  const query = params.toString();
  return query ? `?${query}` : "";
}

/** What `subscribe` sends: role and active left out for "any" (null is an error). */
export function toSubscribe(view) {
  const out = { q: view.q, sort: view.sort, page: view.page, per_page: view.per_page };
  if (view.role) out.role = view.role;
  if (view.active !== null) out.active = view.active;
  return out;
}

export function sameView(a, b) {
  return ["q", "role", "active", "sort", "page", "per_page"].every((k) => a[k] === b[k]);
}

/** The sort a click on a column's header asks for: that column, or reversed when it leads. */
export function toggledSort(current, field) {
  const first = current.split(",")[0];
  return first === field ? `-${field}` : field;
}

/** The page links' numbers, null for a gap: as Flask-SQLAlchemy's iter_pages(). */
export function pageNumbers(page, pages, { leftEdge = 2, leftCurrent = 2, rightCurrent = 4,
                                           rightEdge = 2 } = {}) {
  const out = [];
  const end = pages + 1;
  if (end === 1) return out;
  const leftEnd = Math.min(1 + leftEdge, end);
  for (let n = 1; n < leftEnd; n++) out.push(n);
  if (leftEnd === end) return out;
  const midStart = Math.max(leftEnd, page - leftCurrent);
  const midEnd = Math.min(page + rightCurrent + 1, end);
  if (midStart - leftEnd > 0) out.push(null);
  for (let n = midStart; n < midEnd; n++) out.push(n);
  if (midEnd === end) return out;
  const rightStart = Math.max(midEnd, end - rightEdge);
  if (rightStart - midEnd > 0) out.push(null);
  for (let n = rightStart; n < end; n++) out.push(n);
  return out;
}
