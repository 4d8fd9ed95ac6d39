"""RESULTS.md tables and plots from the result.json files of `make results`.

The tables go between the markers ``<!-- results:begin -->`` / ``<!-- results:end -->`` of
RESULTS.md (text outside them is kept); plots go to bench/results/suite/. A tiny-budget run
writes both under its own output folder instead.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.suite import plan

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
METHOD_NAMES = {
    "base": "base model (same prompt, no training)",
    "lorakit-qv": "lorakit LoRA q+v",
    "lorakit-all": "lorakit LoRA all-linear",
    "lorakit-all-r16": "lorakit LoRA all-linear r16",
    "peft-qv": "PEFT LoRA q+v (same config)",
    "full": "full fine-tuning",
}
# PEFT's points coincide with lorakit's at the same config: a different marker keeps both visible.
MARKERS = {"lorakit-qv": "o", "peft-qv": "x", "lorakit-all": "s", "lorakit-all-r16": "D", "full": "^"}
MARKERS["base"] = "v"
GEN_COLUMNS = {
    "e2e": ("bleu", "chrf", "rouge_l"),
    "e2e-target": ("bleu", "chrf", "rouge_l"),
    "multi30k": ("bleu", "chrf"),
    "multi30k-gemma": ("bleu", "chrf"),
}


def load_results(out: Path, task: plan.Task) -> dict[str, list[dict[str, Any]]]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for spec_path in sorted((out / task.key).glob("*/spec.json")):
        folder = spec_path.parent
        if folder.name.startswith(("tune-", "superseded-")):
            continue
        res = _result(folder)
        if res is not None:
            res["curve"] = _curve(folder / "run" / "metrics.jsonl", task.metric)
            by_method.setdefault(res["method"], []).append(res)
    # a seed still running (or interrupted) is left out of a row that has finished seeds
    for method, runs in by_method.items():
        finished = [r for r in runs if r.get("partial") is None]
        by_method[method] = finished or runs
    return by_method


def _result(folder: Path) -> dict[str, Any] | None:
    """The job's result; for a job still running (or interrupted), its newest evaluation,
    marked ``partial`` with the step it was taken at."""
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    spec = json.loads((folder / "spec.json").read_text())
    rows = [r for r in _rows(folder / "run" / "metrics.jsonl") if r.get("split") == "eval"]
    if not rows:
        return None
    summary = {
        "final_metrics": rows[-1],
        "trainable_params": None,
        "wall_time_s": None,
        "peak_memory_mb": None,
    }
    return {
        "job": folder.name,
        "method": spec["method"],
        "result": str(folder / "result.json"),
        "summary": summary,
        "partial": rows[-1]["step"],
    }


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _curve(path: Path, metric: str) -> list[tuple[int, float]]:
    rows = _rows(path)
    return [(r["step"], r[metric]) for r in rows if r.get("split") == "eval" and metric in r]


def _mean_std(values: list[float], scale: float, digits: int) -> str:
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _cell(runs: list[dict[str, Any]], metric: str) -> str:
    values = [r["summary"]["final_metrics"][metric] for r in runs]
    scale = 100.0 if metric in ("accuracy", "f1", "precision", "recall", "macro_f1") else 1.0
    return _mean_std(values, scale, 2)


def _row_common(task: plan.Task, method: str, runs: list[dict[str, Any]]) -> list[str]:
    s = runs[0]["summary"]
    cfg = json.loads((Path(runs[0]["result"]).parent / "spec.json").read_text())["config"]
    steps = "-" if method == "base" else f"{cfg['train']['max_steps']} x {cfg['train']['batch_size']}"
    if runs[0].get("partial") is not None:
        steps = f"**{runs[0]['partial']}** of {steps} (unfinished)"
    lr = "-" if method == "base" else f"{cfg['train']['lr']:g}"
    seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    params = "-" if s["trainable_params"] is None else f"{s['trainable_params']:,}"
    return [METHOD_NAMES[method] + seeds, params, steps, lr]


def _row_costs(runs: list[dict[str, Any]]) -> list[str]:
    if any(r["summary"]["wall_time_s"] is None for r in runs):
        return ["-", "-", "-"]
    wall = statistics.mean(r["summary"]["wall_time_s"] for r in runs)
    peak = max(r["summary"]["peak_memory_mb"] for r in runs)
    loads = [float(r["loadavg_end"][1]) for r in runs if r.get("loadavg_end")]
    load = f"{min(loads):.0f}-{max(loads):.0f}" if len(loads) > 1 else (f"{loads[0]:.0f}" if loads else "-")
    return [f"{wall / 60:.1f} min", load, f"{peak / 1024:.2f} GB"]


def task_table(task: plan.Task, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    metrics = GEN_COLUMNS.get(task.key) or (
        ("accuracy", "macro_f1") if task.key == "sst2" else ("f1", "precision", "recall")
    )
    head = ["method", "trainable params", "steps x batch", "lr", *[f"val. {m}" for m in metrics]]
    head += ["wall time", "load avg (5 min, at end)", "peak memory"]
    model = Path(task.model).name if "/" in task.model else task.model
    lines = [f"**{task.dataset}** — model `{model}`", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + " --- |" * len(head))
    for method in ("base", *task.methods) if task.base_eval else task.methods:
        runs = results.get(method)
        if not runs:
            missing = ["not run yet (`make results` resumes it)"] + ["-"] * (len(head) - 2)
            lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(missing) + " |")
            continue
        cells = _row_common(task, method, runs) + [_cell(runs, m) for m in metrics] + _row_costs(runs)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_type_table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| method | " + " | ".join(["PER F1", "LOC F1", "ORG F1", "MISC F1"]) + " |", "|" + " --- |" * 5]
    for method, runs in results.items():
        pers = [r["summary"]["final_metrics"].get("per_type") or {} for r in runs]
        cells = [
            _mean_std([p[k]["f1"] for p in pers], 100.0, 2) if all(k in p for p in pers) else "-"
            for k in ("PER", "LOC", "ORG", "MISC")
        ]
        seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
        lines.append(f"| {METHOD_NAMES[method]}{seeds} | " + " | ".join(cells) + " |")
    return lines


def signatures(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    for runs in results.values():
        fm = runs[0]["summary"]["final_metrics"]
        sigs = [f"`{k}`: `{v}`" for k, v in fm.items() if k.endswith("_signature")]
        if sigs:
            refs = f"{fm.get('prompts')} prompts, {fm.get('references')} references"
            return [f"sacrebleu signatures ({refs}): " + "; ".join(sigs)]
    return []


def write_plots(folder: Path, tasks: list[plan.Task], all_results: dict[str, dict[str, Any]]) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in tasks if all_results[t.key]]  # no empty panels
    written = []
    for kind in ("params", "curves"):
        fig = Figure(figsize=(4.2 * len(tasks), 3.6))
        FigureCanvasAgg(fig)
        for i, task in enumerate(tasks):
            ax = fig.add_subplot(1, len(tasks), i + 1)
            for method, runs in all_results[task.key].items():
                if kind == "params" and method != "base" and runs[0]["summary"]["trainable_params"]:
                    xs = [max(r["summary"]["trainable_params"], 1) for r in runs]
                    ys = [r["summary"]["final_metrics"][task.metric] for r in runs]
                    ax.scatter(xs, ys, label=METHOD_NAMES[method], marker=MARKERS.get(method, "o"))
                elif kind == "curves" and runs[0]["curve"]:
                    steps, values = zip(*runs[0]["curve"], strict=True)
                    style = MARKERS.get(method, "o") + ("--" if method == "peft-qv" else "-")
                    ax.plot(steps, values, style, label=METHOD_NAMES[method] + " (seed 0)")
            if kind == "params":
                ax.set_xscale("log")
                ax.set_xlabel("trainable parameters")
            else:
                ax.set_xlabel("step")
            ax.set_ylabel(f"validation {task.metric}")
            ax.set_title(task.key)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / ("metric_vs_params.png" if kind == "params" else "learning_curves.png")
        fig.savefig(path, dpi=90)
        written.append(path)
    return written


def write_report(out: Path, tasks: list[plan.Task], budget: str) -> Path:
    all_results = {t.key: load_results(out, t) for t in tasks}
    target = plan.ROOT / "RESULTS.md" if budget == "full" else out / "RESULTS.md"
    plots = plan.ROOT / "bench" / "results" / "suite" if budget == "full" else out / "plots"
    written = write_plots(plots, tasks, all_results)
    lines = [BEGIN, ""]
    for task in tasks:
        results = all_results[task.key]
        if not results:
            continue
        lines += [f"### {task.key}", "", *task_table(task, results), ""]
        if task.key == "conll2003":
            lines += ["Entity F1 per type:", "", *per_type_table(results), ""]
        lines += [*signatures(results), ""]
        for method in ("lorakit-qv", "lorakit-all", "lorakit-all-r16", "full"):
            lr_file = out / task.key / ("full_lr.json" if method == "full" else f"lr_{method}.json")
            if lr_file.is_file():
                tuned = json.loads(lr_file.read_text())
                shown = ", ".join(f"{float(k):g}: {100 * v:.2f}" for k, v in tuned["scores"].items())
                name = METHOD_NAMES[method] + (" (and PEFT LoRA q+v)" if method == "lorakit-qv" else "")
                lines += [f"{name}: lr tuned on 5% of the training file ({task.metric}): {shown}", ""]
    rel = [p.relative_to(target.parent) if p.is_relative_to(target.parent) else p for p in written]
    lines += [f"![{p.stem}]({p})" for p in rel]
    lines += ["", END]
    block = "\n".join(lines)
    text = target.read_text() if target.is_file() else f"# Results\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    target.write_text(head + block + tail)
    return target
