"""Figures of the web page (issue 14): page weight, first paint with 50 runs, live-curve latency.

    python -m bench.ui_page                       # 50 runs, 5 loads, 20 live updates
    python -m bench.ui_page --runs 200 --json build/ui-figures.json

The runs folder holds copies of one real tiny training run (200 steps, a metrics line per step);
the page is served by ``lorakit ui``'s app on 127.0.0.1 and loaded in headless Chromium (Debian's
package) with an empty cache each time. Latency: a line is appended to a running run's
metrics.jsonl at a random moment, and the clock stops when the curve on the page has the point.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tests.ui.conftest import CHROMIUM, LiveServer, ui_app  # noqa: E402

from lorakit.ui.routes import STATIC_DIR  # noqa: E402


def make_runs(root: Path, n: int) -> Path:
    """``n`` copies of one real 200-step run, and ``live`` (its first 50 lines, no summary)."""
    import tiny_assets
    from lorakit.runconfig.yaml_io import load_config
    from lorakit.training.loop import train

    work = root / "work"
    model = tiny_assets.make_model(work / "bert", "bert")
    config = tiny_assets.write_run(work / "cls", "classification", model, n_train=96)
    source = root / "source"
    overrides = ["train.max_steps=200", "train.log_every=1", "train.eval_every=20", "train.save_every=null"]
    train(load_config(config, [*overrides, f"output_dir={source}"]))
    runs = root / "runs"
    for i in range(n):
        (runs / f"run-{i:03d}").mkdir(parents=True)
        for name in ("config.yaml", "metrics.jsonl", "summary.json"):
            shutil.copy2(source / name, runs / f"run-{i:03d}" / name)
    live = runs / "live"
    live.mkdir()
    shutil.copy2(source / "config.yaml", live / "config.yaml")
    lines = (source / "metrics.jsonl").read_text().splitlines(keepends=True)
    (live / "metrics.jsonl").write_text("".join(lines[:50]))
    return runs


def page_weight(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context()
    page = context.new_page()
    sizes: dict[str, int] = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body())) if r.ok else None)
    page.goto(url + "/#/runs")
    page.wait_for_function("document.querySelector('#view-runs .chart').dataset.points > 0")
    page.wait_for_load_state("networkidle")
    context.close()
    static = {u: s for u, s in sizes.items() if "/api/" not in u}
    files = [p for p in STATIC_DIR.rglob("*") if p.suffix in (".html", ".css", ".js")]
    return {
        "static_kb": sum(static.values()) / 1024,
        "static_files": len(static),
        "static_gzip_kb": sum(len(gzip.compress(p.read_bytes())) for p in files) / 1024,
        "vendor_kb": sum(s for u, s in static.items() if "/vendor/" in u) / 1024,
        "api_kb": sum(s for u, s in sizes.items() if "/api/" in u) / 1024,
    }


def first_paint(browser: Any, url: str, n_runs: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url + "/#/runs")
    page.wait_for_function(f"document.querySelectorAll('#runs-table tbody tr').length === {n_runs}")
    curve_ms = page.wait_for_function(
        "document.querySelector('#view-runs .chart').dataset.points > 0 && performance.now()"
    ).json_value()
    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
    table = page.evaluate("performance.getEntriesByName('runs-rendered')[0].startTime")
    context.close()
    return {"fcp_ms": fcp, "runs_table_ms": table, "first_curve_ms": curve_ms}


def live_latency(browser: Any, url: str, runs: Path, updates: int) -> list[float]:
    lines = (runs / "run-000" / "metrics.jsonl").read_text().splitlines(keepends=True)[50 : 50 + updates]
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/#/runs?sel=live")
    chart = "document.querySelector('#view-runs .chart')"
    page.wait_for_function(f"{chart}.dataset.points > 0")
    rng = random.Random(0)
    out = []
    for line in lines:
        page.wait_for_timeout(rng.uniform(0, 1000))  # a random phase of the 1 s poll
        before = int(page.evaluate(f"{chart}.dataset.points"))
        start = time.monotonic()
        with open(runs / "live" / "metrics.jsonl", "a") as f:
            f.write(line)
        page.wait_for_function(f"+{chart}.dataset.points > {before}", polling="raf")
        out.append(time.monotonic() - start)
    context.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp), args.runs)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        with LiveServer(ui_app(runs)) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            weight = page_weight(browser, server.url)
            paints = [first_paint(browser, server.url, args.runs + 1) for _ in range(args.repeats)]
            latency = live_latency(browser, server.url, runs, args.updates)
            browser.close()
        load_after = Path("/proc/loadavg").read_text().split()[:3]
    median = {k: statistics.median(p[k] for p in paints) for k in paints[0]}
    q = sorted(latency)
    figures = {
        "runs": args.runs + 1,
        "page_weight": weight,
        "first_paint_median_ms": median,
        "first_paint_all": paints,
        "live_latency_s": {"median": statistics.median(q), "p90": q[int(0.9 * (len(q) - 1))], "max": q[-1]},
        "loadavg_before_after": [load_before, load_after],
    }
    print(
        f"page weight: {weight['static_kb']:.1f} KB in {weight['static_files']} files "
        f"(uPlot {weight['vendor_kb']:.1f} KB; all text files gzipped: {weight['static_gzip_kb']:.1f} KB); "
        f"first /api/ answers {weight['api_kb']:.1f} KB"
    )
    print(
        f"runs view with {args.runs + 1} runs, median of {args.repeats} cold loads: first contentful paint "
        f"{median['fcp_ms']:.0f} ms, table rendered {median['runs_table_ms']:.0f} ms, "
        f"first curve {median['first_curve_ms']:.0f} ms"
    )
    lat = figures["live_latency_s"]
    print(
        f"live curve: {len(latency)} appended lines, latency median {lat['median']:.2f} s, "
        f"p90 {lat['p90']:.2f} s, max {lat['max']:.2f} s (poll every 1 s)"
    )
    print(f"load average before / after: {' '.join(load_before)} / {' '.join(load_after)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
