"""Encoder adapters over HTTP: each text through its own adapter and head, as if alone."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import httpx
import torch

from lorakit import load_adapter


def _classify(server, model: str, texts: list[str]) -> dict:
    r = httpx.post(server.url + "/v1/classify", json={"model": model, "input": texts}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _alone_probs(assets: dict[str, Path], name: str, text: str, labels: int) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(assets["base"])
    model = AutoModelForSequenceClassification.from_pretrained(assets["base"], num_labels=labels)
    load_adapter(model, assets[name], name)
    with torch.no_grad():
        return torch.softmax(model.eval()(**tok([text], return_tensors="pt")).logits[0], -1)


def test_mixed_classification_equals_each_adapter_alone(encoder_server, encoder_assets) -> None:
    texts = ["the movie was very good", "the plot was awful", "alice loves paris"]
    jobs = [
        ("sent", texts, ["neg", "pos"]),
        ("sent2", texts[::-1], ["bad", "good"]),
        ("topic", texts, ["x", "y", "z"]),
    ]
    with cf.ThreadPoolExecutor(3) as pool:  # arrive together: one mixed batch per head shape
        results = list(pool.map(lambda j: _classify(encoder_server, j[0], j[1]), jobs))
    for (name, inputs, labels), got in zip(jobs, results, strict=True):
        assert got["task"] == "classification" and got["model"] == name
        assert got["usage"]["prompt_tokens"] > 0
        for item, text in zip(got["data"], inputs, strict=True):
            want = _alone_probs(encoder_assets, name, text, len(labels))
            probs = torch.tensor([item["probs"][lab] for lab in labels])
            assert (probs - want).abs().max() < 1e-5
            assert item["label"] == labels[int(want.argmax())]


def test_token_classification_entities_have_char_offsets(encoder_server) -> None:
    texts = ["alice visited paris with bob", "  bob   met alice in london "]
    got = _classify(encoder_server, "ner", texts)
    assert got["task"] == "token_classification"
    for item, text in zip(got["data"], texts, strict=True):
        assert item["tokens"] == text.split() and len(item["tags"]) == len(item["tokens"])
        for ent in item["entities"]:
            assert text[ent["start"] : ent["end"]] == ent["text"] and ent["label"] in ("PER", "LOC")


def test_models_list_encoder_adapters_with_labels(encoder_server) -> None:
    data = {m["id"]: m for m in httpx.get(encoder_server.url + "/v1/models").json()["data"]}
    assert data["sent"]["lorakit"] == {
        "kind": "adapter",
        "task": "classification",
        "labels": ["neg", "pos"],
        "loaded": True,
    }
    assert data["ner"]["lorakit"]["task"] == "token_classification"
    r = httpx.post(encoder_server.url + "/v1/completions", json={"model": "sent", "prompt": "x"})
    assert r.status_code == 400 and "classify" in r.json()["error"]["message"]
