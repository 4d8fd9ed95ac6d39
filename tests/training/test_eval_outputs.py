"""What evaluation leaves in a run: summary.json's final metric set, the confusion matrix PNG,
and the eval config (metrics, legacy generate_samples, tag scheme) validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lorakit.metrics import GENERATION_METRICS, TAG_SCHEMES
from lorakit.runconfig.schema import EvalSection, RunConfig
from lorakit.runconfig.yaml_io import load_config
from lorakit.tasks.generation_eval import wanted_metrics
from lorakit.training.loop import train
from tiny_assets import write_run


def test_summary_has_final_metrics_and_confusion_png(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=4, eval_every=2, save_every=None)
    summary = train(load_config(cfg))
    run = tmp_path / "run"
    on_disk = json.loads((run / "summary.json").read_text())
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    final = on_disk["final_metrics"]
    assert final == summary["final_metrics"] and final["step"] == 4 == evals[-1]["step"]
    assert {"loss", "accuracy", "macro_f1", "confusion_matrix"} <= set(final)
    counts = final["confusion_matrix"]["counts"]
    assert sum(map(sum, counts)) == 16  # every validation example counted once
    correct = sum(counts[i][i] for i in range(len(counts)))
    assert final["accuracy"] == pytest.approx(correct / 16)
    png = run / "plots" / "confusion_matrix.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_config_literals_match_the_metrics_package() -> None:
    fields = EvalSection.model_fields
    assert "Literal['bleu', 'chrf', 'rouge_l', 'exact_match']" in str(fields["metrics"].annotation)
    assert GENERATION_METRICS == ("bleu", "chrf", "rouge_l", "exact_match")
    assert TAG_SCHEMES == ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")
    for scheme in TAG_SCHEMES:
        assert EvalSection(tag_scheme=scheme).tag_scheme == scheme


def test_eval_metrics_validation_and_defaults() -> None:
    with pytest.raises(ValidationError, match="metrics"):
        EvalSection(metrics=["meteor"])
    base = {"model": "m", "task": "seq2seq"}
    assert wanted_metrics(RunConfig(**base)) == ["bleu", "chrf"]
    assert wanted_metrics(RunConfig(**{**base, "task": "causal_lm"})) == []
    picked = RunConfig(**base, eval={"metrics": ["rouge_l"]}, train={"metric_for_best": "chrf"})
    assert wanted_metrics(picked) == ["rouge_l", "chrf"]  # metric_for_best is always computed


def test_legacy_generate_samples() -> None:
    assert EvalSection(generate_samples=0).metrics == []
    assert EvalSection(generate_samples=7).max_eval_samples == 7
    assert EvalSection(generate_samples=None).max_eval_samples == 200
