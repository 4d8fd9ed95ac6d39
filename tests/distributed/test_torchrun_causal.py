"""The chunked causal-LM loss under torchrun on CPU (gloo) with a tiny Llama.

Model and loss are one module that DDP / FSDP wrap: a two-rank run with the chunked loss (the
default) ends with the adapter and losses of a single process with the plain loss, and under FSDP
evaluation and generation go through the sharded root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.distributed.test_torchrun_train import (
    SINGLE,
    TWO_RANKS,
    assert_same_adapter,
    run,
    torchrun_cmd,
    train_losses,
)
from tests.tiny_assets import make_model, write_run

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist_causal")
    model = make_model(root / "llama", "llama")
    config = write_run(
        root / "data", "causal_lm", model, n_train=24,
        max_steps=STEPS, eval_every=3, save_every=None, log_every=1, keep_best=False, warmup_ratio=0.2,
    )  # fmt: skip
    return root, config


@pytest.fixture(scope="module")
def single_plain(setup: tuple[Path, Path]) -> Path:
    """One process, plain loss; in this process (a torchrun job costs a start-up per rank)."""
    from lorakit.runconfig.yaml_io import load_config
    from lorakit.training.loop import train

    root, config = setup
    out = root / "single"
    train(load_config(str(config), [*SINGLE, "train.chunked_lm_loss=false", f"output_dir={out}"]))
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_with_chunked_loss_equal_one_process_with_plain_loss(
    setup: tuple[Path, Path], single_plain: Path, strategy: str
) -> None:
    root, config = setup
    out = root / strategy
    extra = (
        ["eval.metrics=[exact_match]", "eval.max_eval_samples=2", "eval.max_new_tokens=3"]
        if strategy == "fsdp"
        else []
    )
    cmd = torchrun_cmd(2, "-m", "lorakit", "train", str(config), *TWO_RANKS, f"train.strategy={strategy}",
                       *extra, "--output-dir", str(out))  # fmt: skip
    proc = run(cmd)
    assert "chunked_lm_loss: not used" not in proc.stdout + proc.stderr
    assert_same_adapter(single_plain / "adapter", out / "adapter", atol=1e-5)
    assert train_losses(out) == pytest.approx(train_losses(single_plain), abs=1e-5)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["split"] == "eval"]
    assert len(evals) == 2 and all(r["loss"] > 0 for r in evals)
    if strategy == "fsdp":  # generation ran on the sharded root
        assert all("exact_match" in r for r in evals)
