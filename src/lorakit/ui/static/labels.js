// What encoder adapters answer: label probabilities as bars, entity spans highlighted in the text.

import { el } from "./dom.js";

// item: {label, probs: {label: p}}; labels: the model's label order (else the order of probs).
export function renderBars(item, labels) {
  const probs = item.probs && typeof item.probs === "object" ? item.probs : {};
  const order = Array.isArray(labels) && labels.length ? labels.filter((l) => l in probs) : Object.keys(probs);
  for (const l of Object.keys(probs)) if (!order.includes(l)) order.push(l);
  const rows = order.map((label) => {
    const p = Number(probs[label]);
    const pct = Number.isFinite(p) ? Math.min(100, Math.max(0, p * 100)) : 0;
    const top = label === item.label;
    return el("li", { class: top ? "bar-row top" : "bar-row", dataset: { label, prob: String(p) } },
      el("span", { class: "bar-label", text: label }),
      el("span", {
        class: "bar", role: "meter", "aria-label": `probability of ${label}`,
        "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": String(p), "aria-valuetext": `${pct.toFixed(1)}%`,
      }, el("span", { class: "bar-fill", style: { width: `${pct}%` } })),
      el("span", { class: "bar-value", text: `${pct.toFixed(1)}%` }));
  });
  return el("div", { class: "bars" },
    el("p", { class: "prediction" }, "Predicted: ", el("strong", { text: String(item.label ?? "—") })),
    el("ul", { class: "bar-list" }, rows));
}

// entities: [{label, text, start, end}] with offsets in Unicode code points (Python's str indices).
export function renderEntities(text, entities) {
  const chars = Array.from(text);
  const spans = entities
    .filter((e) => Number.isInteger(e.start) && Number.isInteger(e.end) && e.start >= 0 && e.end > e.start && e.end <= chars.length)
    .sort((a, b) => a.start - b.start);
  const parts = [];
  let at = 0;
  for (const e of spans) {
    if (e.start < at) continue; // overlapping span: keep the first
    if (e.start > at) parts.push(chars.slice(at, e.start).join(""));
    const label = String(e.label ?? "");
    parts.push(el("mark", { class: `entity ent-${label.replace(/[^A-Za-z]/g, "").slice(0, 8)}`, dataset: { label } },
      chars.slice(e.start, e.end).join(""),
      el("span", { class: "entity-label", text: label })));
    at = e.end;
  }
  if (at < chars.length) parts.push(chars.slice(at).join(""));
  const list = spans.length
    ? el("p", { class: "muted entity-count", text: `${spans.length} entit${spans.length === 1 ? "y" : "ies"}` })
    : el("p", { class: "muted entity-count", text: "No entities found." });
  return el("div", { class: "entities" }, el("p", { class: "entity-text" }, parts), list);
}
