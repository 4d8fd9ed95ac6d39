// DOM building without HTML strings: every piece of text becomes a text node, so run names,
// config values and model outputs can never be parsed as markup. Nothing here uses innerHTML.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key in node && typeof value !== "string") node[key] = value; // checked, disabled, value...
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// A page-unique id (panels appear in several views; labels need distinct targets).
let lastId = 0;
export const uid = (prefix) => `${prefix}-${++lastId}`;

// ---- number formatting -------------------------------------------------------------------------

export function fmtInt(n) {
  return typeof n === "number" && Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—";
}

export function fmtNum(n, digits = 4) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  if (n !== 0 && (Math.abs(n) >= 1e5 || Math.abs(n) < 1e-3)) return n.toExponential(2);
  return n.toFixed(digits);
}

export function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtAgo(epochSeconds) {
  if (typeof epochSeconds !== "number") return "";
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// A config value as one line of text (strings plain, the rest as JSON).
export function fmtValue(v) {
  if (v && typeof v === "object" && v.missing === true && Object.keys(v).length === 1) return "(absent)";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

// A model path shown by its last component (the full text stays in the title).
export function shortModel(model) {
  if (typeof model !== "string") return "—";
  const parts = model.split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : model;
}

export const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7a5195", "#444444"];
