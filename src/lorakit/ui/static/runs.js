// The runs view: a table of every run (updated in place while runs train), the sweeps, and for
// the selected runs their curves (overlaid) and their summary / config diff.

import { getJSON } from "./api.js";
import { CurvesPanel } from "./curves.js";
import { DetailsPanel } from "./details.js";
import { el, fmtAgo, fmtDuration, fmtInt, fmtNum, shortModel } from "./dom.js";

export const LIST_POLL_MS = 3000;

const COLUMNS = [
  { key: "name", label: "Run", sort: (r) => r.name.toLowerCase() },
  { key: "status", label: "Status", sort: (r) => r.status },
  { key: "task", label: "Task", sort: (r) => r.task || "" },
  { key: "model", label: "Model", sort: (r) => shortModel(r.model) },
  { key: "trainable_params", label: "Trainable params", num: true, sort: (r) => r.trainable_params ?? -1 },
  { key: "best_metric", label: "Best metric", num: true, sort: (r) => r.best_metric ?? -Infinity },
  { key: "step", label: "Step", num: true, sort: (r) => r.step ?? -1 },
  { key: "wall_time_s", label: "Wall time", num: true, sort: (r) => r.wall_time_s ?? -1 },
  { key: "updated", label: "Updated", num: true, sort: (r) => r.updated ?? 0 },
];

function cellText(run, key) {
  switch (key) {
    case "task": return run.task || "—";
    case "model": return shortModel(run.model);
    case "trainable_params":
      return run.trainable_params == null ? "—" : `${fmtInt(run.trainable_params)} (${fmtNum(run.trainable_percent, 2)}%)`;
    case "best_metric":
      return run.best_metric == null ? "—" : `${fmtNum(run.best_metric)} ${run.metric || ""}`.trim();
    case "step": return run.step == null ? "—" : fmtInt(run.step);
    case "wall_time_s": return run.status === "running" ? "running" : fmtDuration(run.wall_time_s);
    case "updated": return fmtAgo(run.updated);
    default: return String(run[key] ?? "—");
  }
}

export class RunsView {
  constructor(root, router, reportError) {
    this.router = router;
    this.reportError = reportError;
    this.runs = new Map();
    this.selected = [];
    this.sort = { key: "updated", desc: true };
    this.timer = null;
    this.rows = new Map();
    this.heading = el("h1", { id: "runs-title", text: "Runs" });
    this.where = el("p", { class: "muted", id: "runs-where" });
    this.tbody = el("tbody", {});
    this.headRow = el("tr", {});
    this.table = el("table", { class: "runs-table", id: "runs-table" },
      el("caption", { class: "sr-only", text: "Training runs: select runs to see their curves and configs" }),
      el("thead", {}, this.headRow), this.tbody);
    this.emptyNote = el("p", { class: "empty muted", hidden: true });
    this.sweepsSection = el("section", { class: "sweeps", "aria-labelledby": "sweeps-title", hidden: true });
    this.curves = new CurvesPanel(reportError);
    this.details = new DetailsPanel(reportError);
    this.selectionNote = el("p", { class: "muted selection-note", id: "selection-note" });
    this.selectionArea = el("div", { class: "selection", hidden: true }, this.curves.node, this.details.node);
    root.replaceChildren(
      el("div", { class: "view-head" }, this.heading, this.where),
      el("div", { class: "table-scroll runs-scroll" }, this.table),
      this.emptyNote, this.sweepsSection, this.selectionNote, this.selectionArea,
    );
    this.renderHead();
  }

  async enter(params) {
    this.selected = params.getAll("sel");
    this.active = true;
    await this.refresh(true);
  }

  leave() {
    this.active = false;
    clearTimeout(this.timer);
    this.curves.stop();
  }

  async refresh(first = false) {
    clearTimeout(this.timer);
    if (!this.active) return;
    try {
      const data = await getJSON("api/runs");
      this.where.textContent = `${data.runs.length} run${data.runs.length === 1 ? "" : "s"} in ${data.runs_dir}/`;
      this.runs = new Map(data.runs.map((r) => [r.id, r]));
      if (first && !this.selected.some((id) => this.runs.has(id)) && data.runs.length) {
        this.selected = [this.sorted()[0].id]; // show the most recent run's curves straight away
      }
      this.renderRows();
      this.renderSweeps(data.sweeps);
      if (first) performance.mark("runs-rendered");
      await this.showSelection();
    } catch (e) {
      this.reportError(e);
    }
    if (this.active) this.timer = setTimeout(() => this.refresh(), document.hidden ? LIST_POLL_MS * 5 : LIST_POLL_MS);
  }

  sorted() {
    const col = COLUMNS.find((c) => c.key === this.sort.key);
    const list = [...this.runs.values()];
    list.sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      const order = x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name);
      return this.sort.desc ? -order : order;
    });
    return list;
  }

  renderHead() {
    const cells = [el("th", { scope: "col", class: "sel-col" }, el("span", { class: "sr-only", text: "Select" }))];
    for (const col of COLUMNS) {
      const active = this.sort.key === col.key;
      const th = el("th", {
        scope: "col", class: col.num ? "num" : "",
        "aria-sort": active ? (this.sort.desc ? "descending" : "ascending") : "none",
      }, el("button", {
        type: "button", class: "sort",
        on: { click: () => this.sortBy(col.key) },
      }, col.label, el("span", { "aria-hidden": "true", text: active ? (this.sort.desc ? " ▾" : " ▴") : "" })));
      cells.push(th);
    }
    this.headRow.replaceChildren(...cells);
  }

  sortBy(key) {
    this.sort = this.sort.key === key ? { key, desc: !this.sort.desc } : { key, desc: COLUMNS.find((c) => c.key === key).num };
    this.renderHead();
    this.renderRows();
  }

  renderRows() {
    const list = this.sorted();
    for (const [id, row] of this.rows) if (!this.runs.has(id)) { row.tr.remove(); this.rows.delete(id); }
    for (const run of list) {
      let row = this.rows.get(run.id);
      if (!row) row = this.makeRow(run);
      for (const col of COLUMNS) {
        if (col.key === "name") continue;
        const text = cellText(run, col.key);
        if (row.cells[col.key].textContent !== text) row.cells[col.key].textContent = text;
      }
      row.badge.className = `badge status-${run.status.replace(/[^a-z_]/g, "")}`;
      row.cells.model.title = run.model || "";
      row.cells.updated.title = run.updated ? new Date(run.updated * 1000).toLocaleString() : "";
      row.check.checked = this.selected.includes(run.id);
      row.tr.classList.toggle("selected", row.check.checked);
      this.tbody.append(row.tr); // appending an attached node moves it: rows follow the sort order
    }
    this.emptyNote.hidden = list.length > 0;
    this.emptyNote.textContent = "No runs here yet. Train one with `lorakit train CONFIG.yaml output_dir=<runs folder>/NAME`; it appears here as it starts.";
  }

  makeRow(run) {
    const check = el("input", {
      type: "checkbox", "aria-label": `Select run ${run.name}`,
      on: { change: () => this.toggle(run.id, check.checked) },
    });
    const nameButton = el("button", {
      type: "button", class: "link run-name", title: `Show only ${run.name}`,
      on: { click: () => this.only(run.id) },
    }, run.name);
    const badge = el("span", { class: "badge" });
    const cells = {};
    const tds = COLUMNS.map((col) => {
      const td = el("td", { class: col.num ? "num" : "" });
      cells[col.key] = col.key === "status" ? badge : td;
      if (col.key === "status") td.append(badge);
      if (col.key === "name") td.append(nameButton);
      return td;
    });
    const tr = el("tr", { dataset: { runId: run.id } }, el("td", { class: "sel-col" }, check), tds);
    const row = { tr, cells, check, badge };
    this.rows.set(run.id, row);
    return row;
  }

  toggle(id, on) {
    this.selected = on ? [...new Set([...this.selected, id])] : this.selected.filter((x) => x !== id);
    this.selectionChanged();
  }

  only(id) {
    this.selected = [id];
    this.selectionChanged();
  }

  selectionChanged() {
    this.router.replace("runs", this.selected.map((id) => ["sel", id]));
    this.renderRows();
    this.showSelection();
  }

  async showSelection() {
    const chosen = this.selected.map((id) => this.runs.get(id)).filter(Boolean);
    this.selectionArea.hidden = chosen.length === 0;
    this.selectionNote.textContent = chosen.length === 0
      ? (this.runs.size ? "Select runs (tick the boxes) to see their curves; two or more to compare their configs." : "")
      : chosen.length === 1 ? "Tick more runs to overlay their curves and diff their configs." : `${chosen.length} runs overlaid.`;
    await Promise.all([this.curves.show(chosen), this.details.show(chosen)]);
  }

  renderSweeps(sweeps) {
    this.sweepsSection.hidden = sweeps.length === 0;
    if (!sweeps.length) return;
    const rows = sweeps.map((s) => {
      const counts = Object.entries(s.counts).map(([k, n]) => `${n} ${k}`).join(", ") || "no trials";
      return el("tr", { dataset: { sweepId: s.id } },
        el("th", { scope: "row" }, el("a", { href: this.router.href("sweep", [["id", s.id]]), text: s.name })),
        el("td", { text: s.metric || "—" }),
        el("td", { text: counts + (s.finished ? "" : " (in progress)") }),
        el("td", { class: "num", text: fmtNum(s.best_metric) }));
    });
    this.sweepsSection.replaceChildren(
      el("h2", { id: "sweeps-title", text: "Sweeps" }),
      el("div", { class: "table-scroll" }, el("table", { class: "sweeps-table" },
        el("thead", {}, el("tr", {}, ["Sweep", "Metric", "Trials", "Best"].map((t, i) =>
          el("th", { scope: "col", class: i === 3 ? "num" : "", text: t })))),
        el("tbody", {}, rows))),
    );
  }
}
