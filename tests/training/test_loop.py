"""Loop behaviour: NaN loss stops with the step named, early stopping, gradient checkpointing
with frozen inputs, gradient accumulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorakit.cli import main
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.loop import train
from tiny_assets import write_run


def test_nan_loss_stops_with_step(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(
        tmp_path,
        "classification",
        tiny_dirs["bert"],
        max_steps=20,
        lr=1e30,
        max_grad_norm=None,
        scheduler="constant",
        warmup_ratio=0,
        save_every=1,
        eval_every=None,
    )
    assert main(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "training loss is nan" in err.lower() and "at step" in err and "Traceback" not in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "at step" in summary["error"]
    assert summary["final_step"] < 20
    assert (tmp_path / "run" / "checkpoints" / f"step-{summary['final_step']}").is_dir()  # last good kept


def test_early_stopping(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    cfg = write_run(
        tmp_path,
        "classification",
        tiny_dirs["bert"],
        max_steps=50,
        lr=1e-12,
        eval_every=2,
        save_every=None,
        early_stopping_patience=2,
        metric_for_best="loss",
        greater_is_better=True,
    )
    summary = train(load_config(cfg))
    assert summary["status"] == "stopped_early"
    assert (
        summary["final_step"] < 50 and (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    )


def test_gradient_checkpointing_trains_lora(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    """With frozen embeddings, checkpointed blocks must still give the LoRA weights gradients."""
    from safetensors.torch import load_file

    cfg = write_run(
        tmp_path,
        "causal_lm",
        tiny_dirs["llama"],
        max_steps=2,
        eval_every=None,
        save_every=None,
        gradient_checkpointing=True,
        grad_accum=2,
        batch_size=4,
    )
    summary = train(load_config(cfg))
    assert summary["status"] == "completed"
    tensors = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    b = [t for k, t in tensors.items() if "lora_B" in k]
    assert b and all(torch.count_nonzero(t) > 0 for t in b)


def test_bf16_autocast_on_cpu(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    cfg = write_run(
        tmp_path,
        "causal_lm",
        tiny_dirs["llama"],
        max_steps=3,
        eval_every=3,
        save_every=None,
        precision="bf16",
    )
    summary = train(load_config(cfg))
    assert summary["status"] == "completed" and summary["best_metric"] is not None


def test_fp16_on_cpu_is_a_config_error(tmp_path: Path, tiny_dirs: dict[str, Path], capsys) -> None:
    cfg = write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=1, precision="fp16", device="cpu"
    )
    assert main(["train", str(cfg)]) == 2
    assert "fp16' needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["torch", "onednn"])
def test_matmul_backend_applies_during_the_run_only(
    tmp_path: Path, tiny_dirs: dict[str, Path], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.matmul_backend is in force while the run computes, and the caller's setting returns."""
    import lorakit
    from lorakit.training import loop

    seen = []
    real = loop._train

    def spy(config, *rest):
        seen.append(lorakit.get_matmul_backend())
        return real(config, *rest)

    monkeypatch.setattr(loop, "_train", spy)
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=2, eval_every=None)
    summary = train(load_config(cfg, [f"train.matmul_backend={backend}"]))
    assert summary["status"] == "completed"
    assert seen == [lorakit.MatmulBackend(backend)]
    assert lorakit.get_matmul_backend() is lorakit.MatmulBackend.AUTO
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert f"matmul_backend: {backend}" in saved
