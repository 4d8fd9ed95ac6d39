"""The compare view against the real ``lorakit serve`` app (tiny models built from configs).

The page's columns must show exactly what the HTTP API answers for the same request: the base and
two adapters of a causal LM (greedy, so deterministic, and different from each other), and a
classifier's bars and an NER adapter's spans equal to ``/v1/classify``.
"""

from __future__ import annotations

from typing import Any

import httpx
from tests.ui.conftest import screenshot
from tests.ui.served import HTML_TOKENS

PROMPT = "question : what is the name of the film ?"
# An emoji first: NER offsets are code points (Python), not UTF-16 units (JavaScript).
TEXT = "\N{GRINNING FACE} alice visited paris with bob and the film was great <b>not bold</b>"
MAX_TOKENS = 24
ALL_DONE = "[...document.querySelectorAll('.column')].every(c => c.dataset.done === 'true')"


def open_compare(page: Any, server: Any) -> list[str]:
    page.goto(f"{server.url}/#/compare")
    page.wait_for_selector("body[data-ready=true]")
    boxes = page.locator("#compare-form input[name=model]")
    boxes.first.wait_for()
    return [b.get_attribute("value") for b in boxes.all() if b.is_checked()]


def send(page: Any, text: str, max_tokens: int | None = MAX_TOKENS) -> None:
    """Send the form; wait until every column is done; no column moves meanwhile."""
    page.fill("#prompt", text)
    if max_tokens is not None:
        page.fill("#max-tokens", str(max_tokens))
    boxes = "[...document.querySelectorAll('.column')].map(c => JSON.stringify(c.getBoundingClientRect()))"
    page.click("#send")
    page.wait_for_selector(".column")
    before = page.evaluate(boxes)
    page.wait_for_function(ALL_DONE, timeout=30_000)
    assert page.evaluate(boxes) == before  # no layout jump while the answers come in


def completion(server: Any, model: str, prompt: str, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """What the API answers, not streamed, for the request the page sent (the form's defaults)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 0}
    response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def rows_over(state: Any, size: int) -> float:
    """Decode steps of the server that ran more than ``size`` rows together."""
    sample = state.metrics.registry.get_sample_value
    return sample("lorakit_batch_size_count") - sample("lorakit_batch_size_bucket", {"le": str(float(size))})


def test_base_and_two_adapters_show_the_apis_answers(page: Any, lm_serve: Any) -> None:
    assert open_compare(page, lm_serve) == ["lm", "concise", "verbose"]
    assert page.locator("#max-tokens").is_visible()
    send(page, PROMPT)
    assert rows_over(lm_serve.state, 2) > 0  # the three streams ran in one mixed batch
    shown = {}
    for model in ("lm", "concise", "verbose"):
        want = completion(lm_serve, model, PROMPT)
        column = page.locator(f'.column[data-model="{model}"]')
        shown[model] = column.locator(".output").text_content()
        assert shown[model] == want["choices"][0]["text"], model
        assert column.get_attribute("data-tokens") == str(want["usage"]["completion_tokens"])
        assert "tok/s" in column.locator(".stats").text_content()
    assert all(shown.values()) and len(set(shown.values())) == 3, shown  # the adapters change the answer
    assert page.log.errors == []
    screenshot(page, "compare", full_page=True)


def test_classifier_bars_and_ner_spans_equal_classify(page: Any, encoder_serve: Any) -> None:
    assert open_compare(page, encoder_serve) == ["ner", "sentiment"]
    assert page.locator("#compare-form input[value=enc]").is_disabled()  # a base without a head
    assert page.locator("#max-tokens").is_hidden()  # nothing here generates
    send(page, TEXT, max_tokens=None)

    def classify(model: str) -> dict[str, Any]:
        body = {"model": model, "input": TEXT}
        (item,) = httpx.post(f"{encoder_serve.url}/v1/classify", json=body, timeout=60).json()["data"]
        return item

    want = classify("sentiment")
    bars = page.locator('.column[data-model="sentiment"] .bar-row')
    shown = {b.get_attribute("data-label"): float(b.get_attribute("data-prob")) for b in bars.all()}
    assert shown == want["probs"] and list(shown) == ["neg", "pos"]
    widths = page.evaluate(
        "[...document.querySelectorAll('.column[data-model=sentiment] .bar-fill')].map(b => b.style.width)"
    )
    assert [float(w.rstrip("%")) for w in widths] == [
        p * 100 for p in want["probs"].values()
    ]  # the bar's length is the probability
    top = page.locator('.column[data-model="sentiment"] .prediction strong').text_content()
    assert top == want["label"]
    entities = classify("ner")["entities"]
    ner = page.locator('.column[data-model="ner"] .entity-text')
    marks = ner.locator("mark.entity").all()
    spans = [(m.get_attribute("data-label"), m.evaluate("n => n.firstChild.textContent")) for m in marks]
    assert spans == [(e["label"], e["text"]) for e in entities] and spans, entities
    # Marks and the text between them are the input, character for character (its HTML as text).
    text_of = "n => n.nodeType === Node.TEXT_NODE ? n.textContent : n.firstChild.textContent"
    assert ner.evaluate(f"p => [...p.childNodes].map({text_of}).join('')") == TEXT
    assert page.evaluate("document.querySelectorAll('.column b').length") == 0
    assert page.log.errors == []
    screenshot(page, "compare-encoders", full_page=True)


def test_html_in_a_real_models_output_is_text(page: Any, runs_dir: Any, served_models: Any) -> None:
    from tests.ui.conftest import serve

    with serve(runs_dir, served_models["html-lm"], {}) as server:
        assert open_compare(page, server) == ["html-lm"]
        send(page, "write some html please", max_tokens=6)
        want = completion(server, "html-lm", "write some html please", max_tokens=6)["choices"][0]["text"]
    assert page.locator(".column .output").text_content() == want
    assert any(t in want for t in HTML_TOKENS[:2]), want
    injected = "document.querySelectorAll('.column script, .column img, .column b').length"
    assert page.evaluate(injected) == 0 and page.log.dialogs == []
