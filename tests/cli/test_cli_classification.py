"""End to end through the CLI: train -> eval -> predict -> merge -> reload with plain transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorakit.cli import main
from tiny_assets import write_run


def test_train_eval_predict_merge(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(
        tmp_path,
        "classification",
        tiny_dirs["bert"],
        max_steps=40,
        lr=3e-2,
        scheduler="constant",
        eval_every=20,
        save_every=20,
    )
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_step"] == 40
    assert 0 < summary["trainable_percent"] < 100 and summary["metric_for_best"] == "accuracy"
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/lorakit_task.json",
        "adapter/tokenizer.json",
        "config.yaml",
        "plots/loss.png",
        "plots/accuracy.png",
    ):
        assert (run / name).is_file(), name
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-20", "step-40"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval"}
    assert all("loss" in r for r in rows) and any("accuracy" in r for r in rows)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "adapter" / "lorakit_task.json").read_text())["labels"] == ["neg", "pos"]
    capsys.readouterr()

    assert main(["eval", str(cfg)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(summary["best_metric"])
    assert metrics["accuracy"] >= 0.75  # the word decides the label; the adapter must learn it

    inp = tmp_path / "inp.jsonl"
    inp.write_text('{"text": "the film was very good"}\n{"text": "the plot was really awful"}\n')
    assert main(["predict", str(cfg), "--input", str(inp)]) == 0
    preds = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in preds] == ["pos", "neg"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds)

    merged = tmp_path / "merged"
    assert main(["merge", "--adapter", str(run / "adapter"), "--out", str(merged)]) == 0
    assert "max |logit diff|" in capsys.readouterr().err
    _compare_merged_with_adapter(cfg, run / "adapter", merged)
    _compare_with_peft(run / "adapter", merged)


def _compare_with_peft(adapter: Path, merged: Path) -> None:
    """adapter/ loads in PEFT (the oracle) and gives the merged model's logits."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    info = json.loads((adapter / "lorakit_task.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(info["model"], num_labels=len(info["labels"]))
    model = peft.PeftModel.from_pretrained(base, str(adapter)).eval()
    plain = AutoModelForSequenceClassification.from_pretrained(str(merged)).eval()
    batch = AutoTokenizer.from_pretrained(str(adapter))(["the plot was good"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, plain(**batch).logits, atol=1e-5, rtol=1e-5)


def _compare_merged_with_adapter(cfg: Path, adapter: Path, merged: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lorakit.runconfig.yaml_io import load_config
    from lorakit.training.setup import load_for_inference

    plain = AutoModelForSequenceClassification.from_pretrained(str(merged)).eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    tok = AutoTokenizer.from_pretrained(str(merged))
    batch = tok(["the movie was good", "a bad plot"], padding=True, return_tensors="pt")
    _, model, _ = load_for_inference(load_config(cfg), adapter)
    with torch.no_grad():
        expected = model(**batch).logits
        got = plain(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_merge_refuses_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    assert main(["merge", "--adapter", str(adapter), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
