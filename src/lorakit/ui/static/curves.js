// Loss and validation-metric curves of one or more runs, overlaid, updating while runs train.

import { LineChart } from "./chart.js";
import { MetricsFollower } from "./follow.js";
import { el, PALETTE, uid } from "./dom.js";

const NOT_METRICS = new Set(["step", "split", "epoch", "lr", "samples_per_s", "tokens_per_s"]);

function points(rows, split, key) {
  const out = [];
  for (const r of rows) {
    if (r.split === split && typeof r.step === "number" && typeof r[key] === "number") out.push([r.step, r[key]]);
  }
  out.sort((a, b) => a[0] - b[0]);
  return out;
}

export class CurvesPanel {
  constructor(onError) {
    this.onError = onError;
    this.runs = []; // info objects of the shown runs, in colour order
    this.metric = "";
    this.shownMetric = null;
    this.userMetric = false;
    this.lossChart = new LineChart("Loss by step: training (solid), validation (dashed, dots)", "loss");
    this.metricChart = new LineChart("Validation metric by step", "value");
    const selectId = uid("metric");
    const titleId = uid("curves-title");
    this.metricSelect = el("select", { id: selectId, class: "metric-select", on: { change: () => this.pickMetric() } });
    this.legend = el("ul", { class: "run-legend", "aria-label": "Colours of the runs" });
    this.node = el(
      "section",
      { class: "curves", "aria-labelledby": titleId },
      el("div", { class: "panel-head" },
        el("h2", { id: titleId, text: "Curves" }),
        this.legend,
        el("label", { class: "inline", for: selectId }, "Validation metric ", this.metricSelect)),
      el("div", { class: "chart-grid" }, this.lossChart.node, this.metricChart.node),
    );
    this.follower = new MetricsFollower((runs) => this.render(runs), (e) => this.onError(e));
  }

  // runs: info objects from /api/runs or /api/run (id, name, status, metric).
  async show(runs) {
    const before = this.runs.map((r) => r.id).join("\n");
    this.runs = runs;
    if (runs.map((r) => r.id).join("\n") !== before) {
      this.userMetric = this.userMetric && runs.length > 0;
      this.renderLegend();
    }
    const live = new Set(runs.filter((r) => r.status === "running").map((r) => r.id));
    await this.follower.follow(runs.map((r) => r.id), live);
  }

  color(i) {
    return PALETTE[i % PALETTE.length];
  }

  renderLegend() {
    this.legend.replaceChildren(
      ...this.runs.map((r, i) =>
        el("li", {}, el("span", { class: "swatch", style: { background: this.color(i) }, "aria-hidden": "true" }), r.name),
      ),
    );
  }

  pickMetric() {
    this.metric = this.metricSelect.value;
    this.userMetric = true;
    this.render([...this.follower.runs.values()]);
  }

  render() {
    const loss = [];
    const metric = [];
    const keys = new Set();
    this.runs.forEach((info, i) => {
      const data = this.follower.get(info.id);
      const rows = data ? data.rows : [];
      for (const r of rows) {
        if (r.split !== "eval") continue;
        for (const [k, v] of Object.entries(r)) if (typeof v === "number" && !NOT_METRICS.has(k)) keys.add(k);
      }
      const color = this.color(i);
      loss.push({ label: info.name, color, points: points(rows, "train", "loss") });
      loss.push({ label: `${info.name} (validation)`, color, dash: true, markers: true, points: points(rows, "eval", "loss") });
    });
    this.updateMetricChoices(keys);
    this.runs.forEach((info, i) => {
      const data = this.follower.get(info.id);
      const rows = data ? data.rows : [];
      metric.push({ label: info.name, color: this.color(i), markers: true, points: points(rows, "eval", this.metric) });
    });
    this.lossChart.update(loss);
    if (this.metric !== this.shownMetric) this.metricChart.destroy(); // the axis title changes
    this.shownMetric = this.metric;
    this.metricChart.setCaption(`Validation ${this.metric || "metric"} by step`);
    this.metricChart.yLabel = this.metric || "value";
    this.metricChart.update(metric);
    this.node.dataset.updated = String(performance.now());
  }

  updateMetricChoices(keys) {
    const names = [...keys].sort((a, b) => (a === "loss") - (b === "loss") || a.localeCompare(b));
    const preferred = this.runs.map((r) => r.metric).find((m) => m && m !== "loss" && keys.has(m));
    if (!this.userMetric || !keys.has(this.metric)) this.metric = preferred || names[0] || "";
    const current = [...this.metricSelect.options].map((o) => o.value).join(",");
    if (current !== names.join(",")) {
      this.metricSelect.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    }
    this.metricSelect.value = this.metric;
    this.metricSelect.disabled = names.length === 0;
  }

  stop() {
    this.follower.stop();
  }
}
