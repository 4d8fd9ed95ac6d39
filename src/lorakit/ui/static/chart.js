// A line chart of values by training step, drawn by the vendored uPlot (global `uPlot`).
// Series have their own steps; they are joined on one x axis with gaps that lines span.

import { el } from "./dom.js";

const HEIGHT = 230;

export class LineChart {
  // caption: what the chart shows (also its accessible name); yLabel: the axis title.
  constructor(caption, yLabel) {
    this.caption = caption;
    this.yLabel = yLabel;
    this.plot = null;
    this.shape = "";
    this.canvas = el("div", { class: "chart-canvas" });
    this.empty = el("p", { class: "chart-empty muted", text: "No points yet." });
    this.captionNode = el("figcaption", { text: caption });
    this.node = el("figure", { class: "chart", role: "group", "aria-label": caption }, this.captionNode, this.canvas, this.empty);
    this.node.dataset.points = "0";
    this.resizer = new ResizeObserver(() => this.fit());
    this.resizer.observe(this.node);
  }

  setCaption(text) {
    this.caption = text;
    this.captionNode.textContent = text;
    this.node.setAttribute("aria-label", text);
  }

  // series: [{label, color, dash (bool), points: [[step, value], ...], markers (bool)}]
  update(series) {
    const shown = series.filter((s) => s.points.length > 0);
    const count = shown.reduce((n, s) => n + s.points.length, 0);
    this.node.dataset.points = String(count);
    this.node.dataset.series = String(shown.length);
    this.empty.hidden = count > 0;
    this.canvas.hidden = count === 0;
    if (count === 0) {
      this.destroy();
      return;
    }
    const data = uPlot.join(shown.map((s) => [s.points.map((p) => p[0]), s.points.map((p) => p[1])]));
    const shape = shown.map((s) => `${s.label}|${s.color}|${s.dash ? 1 : 0}`).join(";");
    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
      return;
    }
    this.destroy();
    this.shape = shape;
    this.plot = new uPlot(this.options(shown), data, this.canvas);
  }

  options(series) {
    const axisColor = getComputedStyle(document.documentElement).getPropertyValue("--fg-muted").trim() || "#555";
    const gridColor = getComputedStyle(document.documentElement).getPropertyValue("--grid").trim() || "#e5e5e5";
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } };
    return {
      width: this.width(),
      height: HEIGHT,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      axes: [
        { ...axis, label: "step", labelSize: 18 },
        { ...axis, label: this.yLabel, labelSize: 18, size: 56 },
      ],
      series: [
        { label: "step" },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.dash ? 1.5 : 2,
          dash: s.dash ? [6, 4] : undefined,
          spanGaps: true,
          points: { show: s.markers ? true : false, size: 6, stroke: s.color, fill: s.color },
          value: (u, v) => (v === null || v === undefined ? "—" : Number(v).toPrecision(4)),
        })),
      ],
    };
  }

  width() {
    return Math.max(240, Math.floor(this.node.clientWidth || 480) - 2);
  }

  fit() {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 1) this.plot.setSize({ width: this.width(), height: HEIGHT });
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.shape = "";
  }

  dispose() {
    this.destroy();
    this.resizer.disconnect();
  }
}
