"""The page in headless Chromium: runs, live curves, overlays, sweeps, compare, safety, API key.

Screenshots of each view land in build/ui-screenshots/.
"""

from __future__ import annotations

import json
import shlex
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.ui.conftest import API_KEY, LIVE_RUN, SCREENSHOTS, live_run_rest, screenshot
from tests.ui.fake_server import HTML_OUTPUT
from tests.ui.fixtures import SWEEP, XSS_NAME

# An emoji first: NER offsets are code points (Python), not UTF-16 units (JavaScript).
TEXT = "\N{GRINNING FACE} Alice found the film great, but Bob visited Paris <b>not bold</b>"


def open_view(page: Any, server: Any, route: str) -> None:
    page.goto(f"{server.url}/#/{route}")
    page.wait_for_selector("body[data-ready=true]")


def run_row(page: Any, run_id: str) -> Any:
    return page.locator("#runs-table tbody tr").filter(
        has=page.get_by_role("button", name=run_id, exact=True)
    )


def fixed(x: float, digits: int) -> str:
    """JavaScript's x.toFixed(digits): the exact binary value, ties rounded up (Python rounds half-even)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def expected_cells(summary: dict[str, Any]) -> dict[str, str]:
    """The runs table's texts for a finished run, formatted as the page does."""
    return {
        "status": summary["status"],
        "trainable": f"{summary['trainable_params']:,} ({fixed(summary['trainable_percent'], 2)}%)",
        "best": f"{fixed(summary['best_metric'], 4)} {summary['metric_for_best']}",
        "step": f"{summary['final_step']:,}",
        "wall": f"{fixed(summary['wall_time_s'], 1)} s",
    }


def test_runs_view_lists_every_run_with_its_numbers(page: Any, runs_server: Any, runs_dir: Path) -> None:
    open_view(page, runs_server, "runs")
    page.wait_for_selector("#runs-table tbody tr")
    finished = sorted(p.parent.name for p in runs_dir.glob("*/summary.json"))
    assert len(finished) >= 5
    for name in finished:
        cells = run_row(page, name).locator("td")
        texts = cells.all_text_contents()
        want = expected_cells(json.loads((runs_dir / name / "summary.json").read_text()))
        # columns: select, run, status, task, model, trainable, best, step, wall, updated
        assert texts[1] == name
        assert [texts[2], texts[5], texts[6], texts[7], texts[8]] == [
            want["status"],
            want["trainable"],
            want["best"],
            want["step"],
            want["wall"],
        ], name
    assert page.locator("#runs-table tbody tr").count() == len(list(runs_dir.glob("*/config.yaml")))
    assert page.locator(".sweeps-table tbody tr").count() == 1
    # Sorting by a column: a header button; the best metric first when sorted descending.
    page.get_by_role("button", name="Best metric").click()
    header = page.locator("#runs-table th", has=page.get_by_role("button", name="Best metric"))
    assert header.get_attribute("aria-sort") == "descending"
    values = [
        float(t.split()[0]) for t in page.locator("#runs-table tbody td:nth-child(7)").all_text_contents()
    ]
    assert values == sorted(values, reverse=True)
    assert page.log.errors == []


def test_pages_load_without_console_errors(page: Any, model_server: Any) -> None:
    for route in ("runs", f"sweep?id={SWEEP}", "compare"):
        open_view(page, model_server, route)
        page.wait_for_timeout(300)
    assert page.log.errors == [] and page.log.dialogs == []


def test_a_growing_metrics_file_extends_the_curve_without_reload(
    page: Any, runs_server: Any, runs_dir: Path
) -> None:
    for name in ("config.yaml", "metrics.jsonl"):
        (runs_dir / LIVE_RUN / name).touch()  # written moments ago: the run is training
    open_view(page, runs_server, f"runs?sel={LIVE_RUN}")
    loss = page.locator("#view-runs .chart").first
    page.wait_for_function("document.querySelector('#view-runs .chart').dataset.points > 0")
    page.evaluate("window.notReloaded = true")
    assert run_row(page, LIVE_RUN).locator(".badge").text_content() == "running"
    metrics = runs_dir / LIVE_RUN / "metrics.jsonl"
    latencies = []
    for line in live_run_rest(runs_dir)[:5]:
        before = int(loss.get_attribute("data-points"))
        start = time.monotonic()
        with open(metrics, "a") as f:
            f.write(line)
        page.wait_for_function(
            "n => +document.querySelector('#view-runs .chart').dataset.points > n", arg=before
        )
        latencies.append(time.monotonic() - start)
        assert int(loss.get_attribute("data-points")) == before + 1
    assert page.evaluate("window.notReloaded") is True
    # The run ends: the rest of its lines and its summary appear; the table says completed.
    with open(metrics, "a") as f:
        f.writelines(live_run_rest(runs_dir)[5:])
    summary = (runs_dir / "topics-r8" / "summary.json").read_text()
    (runs_dir / LIVE_RUN / "summary.json").write_text(summary)  # written last, as train does
    badge = f"#runs-table tr[data-run-id='{LIVE_RUN}'] .badge"
    page.wait_for_function(f"document.querySelector(\"{badge}\").textContent == 'completed'", timeout=15_000)
    expected = sum('"loss"' in line for line in metrics.read_text().splitlines())
    page.wait_for_function(f"+document.querySelector('#view-runs .chart').dataset.points == {expected}")
    assert max(latencies) < 3.0, latencies  # poll every 1 s
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "live-latency.json").write_text(json.dumps({"seconds": latencies}))


def test_overlay_and_config_diff(page: Any, runs_server: Any) -> None:
    open_view(page, runs_server, "runs")
    run_row(page, "topics-r2").get_by_role("button").click()
    page.get_by_label("Select run topics-r8").check()
    page.wait_for_selector("#view-runs .config-diff tbody tr")
    legend = page.locator("#view-runs .run-legend li").all_text_contents()
    assert legend == ["topics-r2", "topics-r8"]
    charts = page.locator("#view-runs .chart")
    page.wait_for_function("document.querySelectorAll('#view-runs .chart')[1].dataset.series == 2")
    assert charts.nth(0).get_attribute("data-series") == "4"  # train + validation loss per run
    rows = page.locator("#view-runs .config-diff tbody tr")
    diff = {
        r.locator("th").text_content().lstrip("≠ "): r.locator("td").all_text_contents() for r in rows.all()
    }
    assert set(diff) == {"lora.r", "output_dir"} and diff["lora.r"] == ["2", "8"]
    page.locator("#view-runs").get_by_label("Show all keys").check()
    assert rows.count() > 40 and page.locator("#view-runs .config-diff tr.differs").count() == 2
    page.locator("#view-runs").get_by_label("Show all keys").uncheck()
    screenshot(page, "runs-overlay", full_page=True)


def test_sweep_table_highlights_the_best_trial(page: Any, runs_server: Any, runs_dir: Path) -> None:
    report = json.loads((runs_dir / SWEEP / "sweep.json").read_text())
    open_view(page, runs_server, "runs")
    page.get_by_role("link", name=SWEEP).click()
    page.wait_for_selector("#trials-table tbody tr")
    best = page.locator("#trials-table tr.best")
    assert best.count() == 1 and best.get_attribute("data-trial") == str(report["best_trial"])
    assert "best" in best.locator("th").text_content()
    page.wait_for_function(
        "[...document.querySelectorAll('.plots img')].length === 3 && "
        "[...document.querySelectorAll('.plots img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    for number in (1, report["best_trial"]):
        page.get_by_label(f"Select trial {number}").check()
    page.wait_for_function("document.querySelectorAll('#view-sweep .chart')[1].dataset.series == 2")
    legend = page.locator("#view-sweep .run-legend li").all_text_contents()
    assert legend == ["trial 1", f"trial {report['best_trial']}"]
    screenshot(page, "sweep", full_page=True)


def test_untrusted_run_names_are_text(page: Any, runs_server: Any) -> None:
    open_view(page, runs_server, "runs")
    row = run_row(page, XSS_NAME)
    assert row.count() == 1
    row.get_by_role("button").click()
    page.wait_for_selector("#view-runs .run-legend li")
    assert page.locator("#view-runs .run-legend li").all_text_contents() == [XSS_NAME]
    page.wait_for_timeout(300)
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.log.dialogs == [] and page.log.errors == []


def test_compare_columns_of_every_task_stream_together(page: Any, model_server: Any, fake_model: Any) -> None:
    """All column kinds on one page (the stand-in serves LM and encoder adapters at once; a real
    server serves one base): streams open together, no layout jump. The same checks against the
    real ``lorakit serve`` app are in test_compare_served.py."""
    open_view(page, model_server, "compare")
    boxes = page.locator("#compare-form input[name=model]")
    assert [b.get_attribute("value") for b in boxes.all()] == [
        "tiny-base",
        "shouty",
        "html-writer",
        "sentiment",
        "ner",
    ]
    assert all(b.is_checked() for b in boxes.all())  # the base and the first 4 adapters
    page.fill("#prompt", TEXT)
    page.fill("#max-tokens", "32")
    fake_model.max_open_streams = 0
    page.click("#send")
    page.wait_for_selector(".column[data-tokens]")
    before = page.evaluate(
        "[...document.querySelectorAll('.column')].map(c => JSON.stringify(c.getBoundingClientRect()))"
    )
    page.wait_for_function("[...document.querySelectorAll('.column')].every(c => c.dataset.done === 'true')")
    after = page.evaluate(
        "[...document.querySelectorAll('.column')].map(c => JSON.stringify(c.getBoundingClientRect()))"
    )
    assert before == after  # no layout jump while the answers stream in
    assert fake_model.max_open_streams == 3  # the three generations were in flight together
    api = httpx.Client(base_url=model_server.url)
    for model in ("tiny-base", "shouty", "html-writer"):
        body = {
            "model": model,
            "prompt": TEXT,
            "max_tokens": 32,
            "temperature": 0,
            "seed": 0,
            "stream": False,
        }
        want = api.post("/v1/completions", json=body).json()["choices"][0]["text"]
        column = page.locator(f'.column[data-model="{model}"]')
        assert column.locator(".output").text_content() == want
        assert "tok/s" in column.locator(".stats").text_content()
    (item,) = api.post("/v1/classify", json={"model": "sentiment", "input": TEXT}).json()["data"]
    bars = page.locator('.column[data-model="sentiment"] .bar-row')
    assert {b.get_attribute("data-label"): float(b.get_attribute("data-prob")) for b in bars.all()} == item[
        "probs"
    ]
    (ner,) = api.post("/v1/classify", json={"model": "ner", "input": TEXT}).json()["data"]
    marks = page.locator('.column[data-model="ner"] mark.entity')
    shown = [
        (m.get_attribute("data-label"), m.evaluate("n => n.firstChild.textContent")) for m in marks.all()
    ]
    assert shown == [(e["label"], e["text"]) for e in ner["entities"]] and len(shown) == 3


def test_model_output_with_html_is_text(page: Any, model_server: Any) -> None:
    open_view(page, model_server, "compare")
    for box in page.locator("#compare-form input[name=model]").all():
        box.set_checked(box.get_attribute("value") == "html-writer")
    page.fill("#prompt", "<script>alert(3)</script>")
    page.get_by_label("Chat template (/v1/chat/completions)").check()
    page.click("#send")
    page.wait_for_selector('.column[data-done="true"]')
    assert page.locator(".column .output").text_content() == HTML_OUTPUT
    assert page.evaluate("document.querySelectorAll('.column script, .column img, .column b').length") == 0
    assert page.log.dialogs == []


def test_compare_without_a_model_says_none_is_served(page: Any, runs_server: Any) -> None:
    open_view(page, runs_server, "compare")
    assert "No model is being served" in page.locator("#no-model").text_content()
    # The command it suggests is one `lorakit serve` accepts.
    from lorakit.cli import build_parser
    from lorakit.cli.serve import settings
    from lorakit.serving.config import build_config

    command = shlex.split(page.locator("#no-model code").text_content())
    assert command[:2] == ["lorakit", "serve"]
    config = build_config(settings(build_parser().parse_args(command[1:])), "the page's hint")
    assert config.base == "smollm2-135m" and config.adapters and config.runs == Path("runs")
    assert page.log.errors == []
    screenshot(page, "compare-no-model")


def test_api_key_is_asked_once_and_kept_in_the_tab(page: Any, keyed_server: Any) -> None:
    open_view(page, keyed_server, "runs")
    notice = page.locator("#notice")
    page.wait_for_selector("#notice .auth")
    assert "401" in notice.text_content() and "API key" in notice.text_content()
    assert page.locator("#key-form").is_visible() and page.locator("#runs-table tbody tr").count() == 0
    screenshot(page, "api-key")
    page.get_by_label("API key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("#runs-table tbody tr")
    assert page.evaluate("sessionStorage.getItem('lorakit.apiKey')") == API_KEY
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    open_view(page, keyed_server, "compare")  # /v1 routes get the key too
    page.wait_for_selector("#compare-form input[name=model]")
    assert notice.text_content() == ""


def test_keyboard_reaches_the_run_checkboxes(page: Any, runs_server: Any) -> None:
    open_view(page, runs_server, "runs")
    page.wait_for_selector("#runs-table tbody tr")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == "Select run topics-r2":
            break
    else:
        pytest.fail("Tab never reached the checkbox of topics-r2")
    page.keyboard.press("Space")
    legend = "[...document.querySelectorAll('#view-runs .run-legend li')]"
    page.wait_for_function(f"{legend}.some(li => li.textContent === 'topics-r2')")
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea, button')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .filter(e => !e.textContent.trim())
             .map(e => e.outerHTML)"""
    )
    assert unlabelled == []


def test_narrow_window_has_no_page_wide_scrolling(page: Any, runs_server: Any) -> None:
    page.set_viewport_size({"width": 400, "height": 800})
    open_view(page, runs_server, "runs?sel=topics-r8&sel=topics-r2")
    page.wait_for_selector("#view-runs .config-diff tbody tr")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    screenshot(page, "runs-narrow", full_page=True)
