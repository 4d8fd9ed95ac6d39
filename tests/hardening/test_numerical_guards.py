"""Numerical guards (issue 7, item 4): NaN/Inf stops training cleanly; merge checks numbers."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lorakit.adapter_io.integrity import (
    CHECKSUM_KEY,
    atomic_write_bytes,
    checksum,
    read_safetensors,
    safetensors_payload,
)
from lorakit.cli import main
from lorakit.cli.merge import SAMPLE_TEXTS, logits, sample_batch
from lorakit.training import loop
from lorakit.training.setup import Run, load_for_inference
from tiny_assets import write_run

BAD_STEP = 6  # the injected fault hits the 6th optimizer step; checkpoints every 2 steps


def _inject(monkeypatch: pytest.MonkeyPatch, fault: Callable[[Run], None]) -> None:
    real = loop.setup_run

    def setup_with_fault(config: object) -> Run:
        run = real(config)
        fault(run)
        return run

    monkeypatch.setattr(loop, "setup_run", setup_with_fault)


def _nan_loss(run: Run) -> None:
    def hook(module: torch.nn.Module, args: object, out: object) -> object:
        if run.model.training and run.state.step == BAD_STEP - 1:
            out.loss = out.loss * float("nan")
        return out

    run.model.register_forward_hook(hook)


def _inf_grad(run: Run) -> None:
    param = next(p for n, p in run.model.named_parameters() if p.requires_grad and "lora_B" in n)

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * math.inf if run.state.step == BAD_STEP - 1 else grad

    param.register_hook(hook)


@pytest.mark.parametrize(
    ("fault", "train", "needle"),
    [
        (_nan_loss, {}, f"the training loss is nan at step {BAD_STEP}"),
        (_inf_grad, {}, f"the gradient norm is inf at step {BAD_STEP}"),
        # No clipping: the update itself turns the weights into NaN; the checkpoint refuses them.
        (_inf_grad, {"max_grad_norm": None}, f"trainable weights are not finite at step {BAD_STEP}"),
    ],
    ids=["nan-loss", "inf-grad", "nan-weights-unclipped"],
)
def test_divergence_stops_with_step_and_last_good_checkpoint(
    tmp_path: Path,
    tiny_dirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    fault: Callable[[Run], None],
    train: dict,
    needle: str,
) -> None:
    cfg = write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=10, save_every=2, eval_every=None, **train
    )
    run = tmp_path / "run"
    _inject(monkeypatch, fault)
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "training diverged" in err and needle in err, err
    assert f"Last good checkpoint: {run / 'checkpoints' / 'step-4'}" in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and needle in summary["error"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
    weights, _ = read_safetensors(run / "checkpoints" / "step-4" / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())

    monkeypatch.undo()  # the fault is gone (e.g. a lower lr): the kept checkpoint resumes
    assert main(["train", str(cfg), "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["resumed_from"].endswith("step-4")


@pytest.fixture(scope="module")
def lm_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_dirs: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("merge")
    cfg = write_run(root, "causal_lm", tiny_dirs["llama"], max_steps=6, eval_every=None, save_every=None)
    assert main(["train", str(cfg)]) == 0
    return root / "run" / "adapter"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (math.inf, "holds NaN or Inf values"),  # refused when the adapter loads
        (1e30, "non-finite"),  # finite factors whose product B @ A overflows: refused by merge
    ],
    ids=["inf-factor", "overflowing-delta"],
)
def test_merge_refuses_non_finite_delta(
    lm_adapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture, value: float, needle: str
) -> None:
    bad = tmp_path / "adapter"
    shutil.copytree(lm_adapter, bad)
    path = bad / "adapter_model.safetensors"
    tensors, metadata = read_safetensors(path)
    prefix = next(k for k in tensors if "lora_B" in k).rsplit(".lora_B.", 1)[0]
    for factor in ("lora_A", "lora_B"):
        tensors[f"{prefix}.{factor}.weight"].fill_(value if factor == "lora_B" or value != math.inf else 1.0)
    metadata[CHECKSUM_KEY] = checksum(tensors)  # a well-formed file: the numbers are the problem
    atomic_write_bytes(path, safetensors_payload(tensors, metadata))
    out = tmp_path / "merged"
    capsys.readouterr()
    assert main(["merge", "--adapter", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and needle in err, err
    assert not out.exists() or not any(out.iterdir())


REPORT = re.compile(
    r"merged \((\w+)\) vs adapter model \(float32\): max \|logit diff\| = (\S+) "
    r"\(tolerance (\S+)\), top-1 agreement (\S+)%"
)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_merge_half_reports_true_logit_diff_and_top1(
    lm_adapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture, dtype: str
) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / dtype
    capsys.readouterr()
    assert main(["merge", "--adapter", str(lm_adapter), "--out", str(out), "--dtype", dtype]) == 0
    lines = {m.group(1): m for m in REPORT.finditer(capsys.readouterr().err)}
    assert set(lines) == {"float32", dtype}
    diff, top1 = float(lines[dtype].group(2)), float(lines[dtype].group(4)) / 100
    assert float(lines["float32"].group(2)) < 1e-4 and 0 < diff <= float(lines[dtype].group(3))

    # The figures are recomputed here from the written folder, without lorakit's merge code.
    task, adapter_model, _ = load_for_inference(None, lm_adapter)
    adapter_model = adapter_model.float()
    batch = sample_batch(task.tokenizer, list(SAMPLE_TEXTS), adapter_model)
    reference = logits(adapter_model, batch)
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert next(merged.parameters()).dtype == getattr(torch, dtype)
    got = logits(merged, batch)
    assert float((reference - got).abs().max()) == pytest.approx(diff, rel=1e-2)
    agree = float((reference.argmax(-1) == got.argmax(-1)).float().mean())
    assert agree == pytest.approx(top1, abs=1e-3)
