// A sweep: its trial table (best trial highlighted), its plots, and the curves of ticked trials.

import { getJSON, query, request } from "./api.js";
import { CurvesPanel } from "./curves.js";
import { DetailsPanel } from "./details.js";
import { el, fmtDuration, fmtInt, fmtNum, fmtValue } from "./dom.js";

const REFRESH_MS = 5000;

export class SweepView {
  constructor(root, router, reportError) {
    this.root = root;
    this.router = router;
    this.reportError = reportError;
    this.curves = new CurvesPanel(reportError);
    this.details = new DetailsPanel(reportError);
    this.heading = el("h1", { id: "sweep-title", text: "Sweep" });
    this.meta = el("p", { class: "muted", id: "sweep-meta" });
    this.tableHolder = el("div", { class: "table-scroll" });
    this.plots = el("div", { class: "plots" });
    this.selectionArea = el("div", { class: "selection", hidden: true }, this.curves.node, this.details.node);
    this.objectUrls = [];
    root.replaceChildren(
      el("p", {}, el("a", { href: router.href("runs", []), text: "← All runs" })),
      el("div", { class: "view-head" }, this.heading, this.meta),
      this.tableHolder,
      el("p", { class: "muted", text: "Tick trials to overlay their curves and diff their configs." }),
      this.selectionArea,
      el("section", { "aria-labelledby": "plots-title" }, el("h2", { id: "plots-title", text: "Plots" }), this.plots),
    );
  }

  async enter(params) {
    this.id = params.get("id") || "";
    this.selected = [];
    this.plotKey = "";
    this.tableKey = "";
    this.active = true;
    await this.refresh();
  }

  leave() {
    this.active = false;
    clearTimeout(this.timer);
    this.curves.stop();
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.active) return;
    try {
      const sweep = await getJSON(query("api/sweep", { id: this.id }));
      this.sweep = sweep;
      this.heading.textContent = `Sweep ${sweep.name}`;
      const counts = Object.entries(sweep.counts).map(([k, n]) => `${n} ${k}`).join(", ");
      this.meta.textContent = `${sweep.metric || "metric"} (${sweep.direction === "minimize" ? "lower" : "higher"} is better) · ${counts || "no trials"} · ${sweep.finished ? "finished" : "in progress"}`;
      this.renderTable(sweep);
      await this.renderPlots(sweep);
      await this.showSelection();
    } catch (e) {
      this.reportError(e);
    }
    if (this.active && this.sweep && !this.sweep.finished) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  renderTable(sweep) {
    const key = JSON.stringify([sweep.keys, sweep.trials, sweep.best_trial]);
    if (key === this.tableKey) return; // unchanged: keep the table (and keyboard focus) as it is
    this.tableKey = key;
    const head = ["", "Trial", ...sweep.keys, "Trainable params", `Best ${sweep.metric || "metric"}`, "Best step", "Wall time", "Status"];
    const rows = sweep.trials.map((t) => {
      const best = t.trial === sweep.best_trial;
      const check = el("input", {
        type: "checkbox", "aria-label": `Select trial ${t.trial}`, checked: this.selected.includes(t.run),
        disabled: !t.run,
        on: { change: () => { this.toggle(t.run, check.checked); } },
      });
      const status = t.status + (t.reason ? `: ${t.reason}` : "");
      return el("tr", { class: best ? "best" : "", dataset: { trial: String(t.trial) }, "aria-current": best ? "true" : null },
        el("td", { class: "sel-col" }, check),
        el("th", { scope: "row" }, String(t.trial), best ? el("span", { class: "badge best-badge", text: "best" }) : null),
        sweep.keys.map((k) => el("td", { text: k in t.params ? fmtValue(t.params[k]) : "—" })),
        el("td", { class: "num", text: fmtInt(t.trainable_params) }),
        el("td", { class: "num", text: fmtNum(t.best_metric) }),
        el("td", { class: "num", text: t.best_step ?? "—" }),
        el("td", { class: "num", text: fmtDuration(t.wall_time_s) }),
        el("td", {}, el("span", { class: `badge status-${t.status.replace(/[^a-z_]/g, "")}`, text: t.status }),
          t.reason ? el("span", { class: "muted reason", text: ` ${t.reason}`, title: status }) : null));
    });
    this.tableHolder.replaceChildren(el("table", { class: "trials-table", id: "trials-table" },
      el("caption", { class: "sr-only", text: `Trials of sweep ${sweep.name}; the best trial is marked` }),
      el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", class: i >= sweep.keys.length + 2 && i < head.length - 1 ? "num" : "" },
        i === 0 ? el("span", { class: "sr-only", text: "Select" }) : h)))),
      el("tbody", {}, rows)));
  }

  async renderPlots(sweep) {
    const key = sweep.plots.join("\n");
    if (key === this.plotKey) return;
    this.plotKey = key;
    for (const url of this.objectUrls) URL.revokeObjectURL(url);
    this.objectUrls = [];
    if (!sweep.plots.length) {
      this.plots.replaceChildren(el("p", { class: "muted", text: "No plots yet (lorakit sweep writes them when it ends)." }));
      return;
    }
    // Fetched with the API key header (an <img src> could not send it), shown from blob URLs.
    const figures = await Promise.all(sweep.plots.map(async (name) => {
      const blob = await (await request(query("api/sweep-plot", { id: sweep.id, name }))).blob();
      const url = URL.createObjectURL(blob);
      this.objectUrls.push(url);
      const title = name.replace(/\.png$/, "").replaceAll("_", " ");
      const img = el("img", { src: url, alt: `Sweep plot: ${title}` });
      const figure = el("figure", { class: "plot" }, img, el("figcaption", { text: title }));
      img.addEventListener("load", () => figure.classList.toggle("wide", img.naturalWidth > 2 * img.naturalHeight));
      return figure;
    }));
    this.plots.replaceChildren(...figures);
  }

  toggle(runId, on) {
    this.selected = on ? [...new Set([...this.selected, runId])] : this.selected.filter((x) => x !== runId);
    this.showSelection();
  }

  async showSelection() {
    const byRun = new Map(this.sweep.trials.filter((t) => t.run).map((t) => [t.run, t]));
    const chosen = this.selected.filter((id) => byRun.has(id)).map((id) => {
      const t = byRun.get(id);
      return { id, name: `trial ${t.trial}`, status: t.status === "running" ? "running" : "completed", metric: this.sweep.metric };
    });
    this.selectionArea.hidden = chosen.length === 0;
    await Promise.all([this.curves.show(chosen), this.details.show(chosen)]);
  }
}
