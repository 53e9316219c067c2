// The dashboard's bulk actions (admins): row checkboxes, select all on the page, one
// confirmation listing what will happen, then POST /users/bulk with the login session
// (CSRF token in X-CSRFToken). The table's live updates then show the result.
const bar = document.getElementById("bulk-bar");
const tbody = document.querySelector("#users-table tbody");
const selectAll = document.getElementById("select-all");
const actionSelect = document.getElementById("bulk-action");
const apply = document.getElementById("bulk-apply");
const count = document.getElementById("bulk-count");
const status = document.getElementById("bulk-status");
const csrf = document.querySelector('meta[name="csrf-token"]').content;

const boxes = () => [...tbody.querySelectorAll("tr[data-id] input[data-select]")];
const selectedRows = () => boxes().filter((box) => box.checked).map((box) => box.closest("tr"));

function refresh() {
  const all = boxes();
  const chosen = all.filter((box) => box.checked).length;
  count.textContent = `${chosen} selected`;
  apply.disabled = chosen === 0;
  selectAll.checked = all.length > 0 && chosen === all.length;
  selectAll.indeterminate = chosen > 0 && chosen < all.length;
}

tbody.addEventListener("change", (event) => {
  if (event.target.matches("input[data-select]")) refresh();
});
selectAll.addEventListener("change", () => {
  for (const box of boxes()) box.checked = selectAll.checked;
  refresh();
});
new MutationObserver(refresh).observe(tbody, { childList: true });  // rows come and go live

apply.addEventListener("click", async () => {
  const rows = selectedRows();
  if (!rows.length) return;
  const [action, role] = actionSelect.value.split(":");
  const label = actionSelect.selectedOptions[0].textContent;
  const names = rows.map((tr) => tr.querySelector('td[data-field="username"]').textContent);
  const question = `${label}: ${rows.length} user${rows.length === 1 ? "" : "s"}?\n\n`
    + `${names.join(", ")}\n\nAll or nothing: if one cannot be done, none is.`;
  if (!window.confirm(question)) return;
  const body = { ids: rows.map((tr) => Number(tr.dataset.id)), action };
  if (role) body.role = role;
  apply.disabled = true;
  status.textContent = "Working…";
  try {
    const response = await fetch(bar.dataset.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const result = await response.json().catch(() => ({}));
    if (response.ok) {
      status.textContent = `${label}: done for ${result.count} user${result.count === 1 ? "" : "s"}.`;
      for (const box of boxes()) box.checked = false;
    } else {
      const gone = result.missing ? ` (no longer there: ${result.missing.join(", ")})` : "";
      status.textContent = `Nothing changed: ${result.error ?? response.statusText}${gone}`;
    }
  } catch (error) {
    status.textContent = `Nothing changed: ${error.message}`;
  }
  refresh();
});
refresh();
