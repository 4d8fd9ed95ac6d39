"""token_classification, causal_lm and seq2seq end to end through the CLI, merged model reloaded
with plain transformers and compared with the adapter model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorakit.cli import main
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.setup import load_for_inference
from tiny_assets import MODEL_FOR, write_run

CASES = {
    "token_classification": ({"max_steps": 40, "lr": 3e-2, "scheduler": "constant"}, "f1"),
    "causal_lm": ({"max_steps": 30, "lr": 3e-2}, "loss"),
    "seq2seq": ({"max_steps": 30, "lr": 3e-2}, "loss"),
}
INPUTS = {
    "token_classification": '{"tokens": ["bob", "visited", "paris"]}\n',
    "causal_lm": '{"prompt": "question : two ?"}\n',
    "seq2seq": '{"source": "one two three"}\n',
}
AUTO = {
    "token_classification": "AutoModelForTokenClassification",
    "causal_lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_task_end_to_end(
    task: str, tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    train_kw, metric = CASES[task]
    cfg = write_run(tmp_path, task, tiny_dirs[MODEL_FOR[task]], eval_every=10, save_every=None, **train_kw)
    extra = {
        "token_classification": [],
        "causal_lm": ["eval.metrics=[bleu,chrf,rouge_l,exact_match]", "eval.max_eval_samples=4"],
        "seq2seq": ["eval.max_eval_samples=4"],  # bleu and chrf by default
    }[task] + ["eval.max_new_tokens=6"]
    assert main(["train", str(cfg), *extra]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["metric_for_best"] == metric
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert evals[-1]["loss"] < evals[0]["loss"] or task == "token_classification"
    if task == "token_classification":
        assert {"precision", "recall", "f1"} <= set(evals[-1]) and summary["best_metric"] > 0.5
    if task == "token_classification":
        assert set(evals[-1]["per_type"]) <= {"PER", "LOC", "ORG", "MISC"} and evals[-1]["per_type"]
    if task == "seq2seq":
        assert {"bleu", "chrf"} <= set(evals[-1]) and "rouge_l" not in evals[-1]
        assert evals[-1]["bleu_signature"].startswith("nrefs:") and evals[-1]["prompts"] <= 4
    if task == "causal_lm":
        assert {"bleu", "chrf", "rouge_l", "exact_match"} <= set(evals[-1]) and evals[-1]["perplexity"] > 1
    # summary.json carries the final evaluation's full metric set
    assert summary["final_metrics"] == {k: v for k, v in evals[-1].items() if k != "split"}
    capsys.readouterr()

    assert main(["eval", str(cfg), *extra]) == 0
    assert "loss" in json.loads(capsys.readouterr().out)
    (tmp_path / "in.jsonl").write_text(INPUTS[task])
    assert main(["predict", str(cfg), "--input", str(tmp_path / "in.jsonl")]) == 0
    pred = json.loads(capsys.readouterr().out)
    if task == "token_classification":
        assert len(pred["tags"]) == 3 and pred["tags"][0] == "B-PER"
    else:
        assert isinstance(pred["generated"], str)
    if task == "causal_lm":
        assert main(["generate", "--adapter", str(run / "adapter"), "--prompt", "question : two ?"]) == 0
        assert "### output" in capsys.readouterr().out

    merged = tmp_path / "merged"
    assert main(["merge", "--adapter", str(run / "adapter"), "--out", str(merged)]) == 0
    _compare(task, cfg, run / "adapter", merged)


def _compare(task: str, cfg: Path, adapter: Path, merged: Path) -> None:
    import transformers

    plain = getattr(transformers, AUTO[task]).from_pretrained(str(merged)).eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    tok = transformers.AutoTokenizer.from_pretrained(str(merged))
    batch = dict(tok(["one two three", "alice visited london"], padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None) if task != "token_classification" else None
    if task == "seq2seq":
        batch["decoder_input_ids"] = torch.zeros(2, 3, dtype=torch.long)
    _, model, _ = load_for_inference(load_config(cfg), adapter)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)


def test_merge_to_bfloat16_reports_difference(tmp_path: Path, tiny_dirs: dict[str, Path], capsys) -> None:
    cfg = write_run(tmp_path, "causal_lm", tiny_dirs["llama"], max_steps=4, eval_every=None, save_every=None)
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    out = tmp_path / "bf16"
    assert (
        main(
            [
                "merge",
                "--adapter",
                str(tmp_path / "run" / "adapter"),
                "--out",
                str(out),
                "--dtype",
                "bfloat16",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "merged (bfloat16)" in err and "top-1 agreement" in err
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json.get("dtype", cfg_json.get("torch_dtype")) == "bfloat16"
