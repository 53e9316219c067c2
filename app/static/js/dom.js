// Building elements without innerHTML: text always goes in as text, never as markup.

/**
 * A new element: `h("a", {class: "btn", href: url, dataset: {page: 2}}, "Next ›")`.
 * Attributes with a null, undefined or false value are left out; children are nodes or
 * strings (added as text nodes).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

/** Restart a CSS animation class on an element (removing and re-adding it). */
export function flash(el, className) {
  el.classList.remove(className);
  void el.offsetWidth;  // a reflow, so the animation starts over
  el.classList.add(className);
}
