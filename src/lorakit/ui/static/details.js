// Below the curves: one run's summary and config, or the config diff of several runs.

import { getJSON, query } from "./api.js";
import { el, fmtDuration, fmtInt, fmtNum, fmtValue, PALETTE, uid } from "./dom.js";

function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

function summaryList(summary) {
  if (!summary) return el("p", { class: "muted", text: "No summary.json yet: the run has not finished." });
  const items = [
    ["Status", summary.status],
    ["Best " + (summary.metric_for_best || "metric"), fmtNum(summary.best_metric)],
    ["Best step", summary.best_step ?? "—"],
    ["Final step", summary.final_step ?? "—"],
    ["Trainable parameters", `${fmtInt(summary.trainable_params)} of ${fmtInt(summary.total_params)} (${fmtNum(summary.trainable_percent, 3)}%)`],
    ["Wall time", fmtDuration(summary.wall_time_s)],
    ["Peak memory", summary.peak_memory_mb != null ? `${fmtInt(summary.peak_memory_mb)} MB` : "—"],
    ["Training examples", fmtInt(summary.train_examples)],
    ["Quantized base", summary.quantize || "no"],
  ];
  if (summary.resumed_from) items.push(["Resumed from", summary.resumed_from]);
  if (summary.error) items.push(["Error", summary.error]);
  return el("dl", { class: "facts" }, items.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
}

function configTable(columns, rows, caption) {
  return el(
    "table",
    { class: "config-table" },
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Key" }),
      columns.map((c, i) => el("th", { scope: "col" },
        columns.length > 1 ? el("span", { class: "swatch", style: { background: PALETTE[i % PALETTE.length] }, "aria-hidden": "true" }) : null,
        c)))),
    el("tbody", {}, rows.map((r) =>
      el("tr", { class: r.differs ? "differs" : "" },
        el("th", { scope: "row" }, r.differs ? el("span", { class: "diff-mark", title: "values differ", text: "≠ " }) : null, r.key),
        r.values.map((v) => el("td", { text: fmtValue(v) }))))),
  );
}

export class DetailsPanel {
  constructor(onError) {
    this.onError = onError;
    this.body = el("div", { class: "details-body" });
    const titleId = uid("details-title");
    this.title = el("h2", { id: titleId, text: "Details" });
    this.node = el("section", { class: "details", "aria-labelledby": titleId }, this.title, this.body);
    this.key = "";
    this.showAll = false;
  }

  // runs: info objects of the selected runs. Re-fetches when the selection or a status changes.
  async show(runs) {
    const key = runs.map((r) => `${r.id}\u0000${r.status}`).join("\n");
    if (key === this.key) return;
    this.key = key;
    try {
      if (runs.length === 1) await this.showOne(runs[0]);
      else if (runs.length > 1) await this.showDiff(runs);
      else this.body.replaceChildren();
    } catch (e) {
      this.key = "";
      this.onError(e);
    }
  }

  async showOne(info) {
    const data = await getJSON(query("api/run", { id: info.id }));
    this.title.textContent = "Run details";
    const flat = flatten(data.config);
    const rows = Object.keys(flat).sort().map((k) => ({ key: k, values: [flat[k]], differs: false }));
    this.body.replaceChildren(
      el("div", { class: "details-grid" },
        el("div", {}, el("h3", { text: "Summary" }), summaryList(data.summary)),
        el("div", {}, el("h3", { text: "Config (config.yaml)" }),
          data.config ? el("div", { class: "table-scroll" }, configTable([info.name], rows, `Config of ${info.name}`))
            : el("p", { class: "muted", text: "No config.yaml." }))),
    );
  }

  async showDiff(runs) {
    const diff = await getJSON(query("api/config-diff", { id: runs.map((r) => r.id) }));
    this.title.textContent = `Config diff: ${diff.differing} of ${diff.rows.length} keys differ`;
    const toggle = el("input", {
      type: "checkbox", checked: this.showAll,
      on: { change: () => { this.showAll = toggle.checked; render(); } },
    });
    const holder = el("div", { class: "table-scroll config-diff" });
    const names = runs.map((r) => r.name);
    const render = () => {
      const rows = this.showAll ? diff.rows : diff.rows.filter((r) => r.differs);
      holder.replaceChildren(rows.length ? configTable(names, rows, "Config diff of the selected runs")
        : el("p", { class: "muted", text: "The configs are identical." }));
    };
    render();
    const missing = diff.missing_config.length
      ? el("p", { class: "muted", text: `No config.yaml in: ${diff.missing_config.join(", ")}` }) : null;
    this.body.replaceChildren(...[el("label", { class: "inline" }, toggle, " Show all keys"), missing, holder].filter(Boolean));
  }
}
