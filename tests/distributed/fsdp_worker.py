"""Run under torchrun by test_torchrun_train.py: train with FSDP through the loop's own steps,
then record the logits of the still-sharded model on the validation set (rank 0 writes them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from lorakit.data.splits import load_splits
from lorakit.distributed import shutdown_distributed
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.loop import training_loop, write_final_adapter
from lorakit.training.reporting import Reporter
from lorakit.training.setup import load_for_inference, setup_run


def validation_logits(config: RunConfig, task: Any, model: nn.Module) -> torch.Tensor:
    """One padded batch of every validation example, in file order."""
    splits = load_splits(config.data, ("validation",))
    batch = task.collate(task.encode(splits.records["validation"], splits.sources["validation"]))
    batch.pop("labels", None)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()


def single_process_logits(config_path: Path, adapter_dir: Path) -> torch.Tensor:
    task, model, config = load_for_inference(load_config(str(config_path), []), adapter_dir)
    return validation_logits(config, task, model)


def main() -> None:
    config_path, out, logits_file, *overrides = sys.argv[1:]
    config = load_config(config_path, overrides)
    config.output_dir = out
    run = setup_run(config)
    assert run.strategy is not None and run.strategy.name == "fsdp"
    reporter = Reporter(run.output_dir, run.dist.is_main)
    reporter.start(0, run.total_steps)
    training_loop(run, reporter)
    write_final_adapter(run)
    logits = validation_logits(config, run.task, run.model)  # every rank: FSDP forwards are collective
    if run.dist.is_main:
        save_file({"logits": logits.contiguous()}, logits_file)
    shutdown_distributed()


if __name__ == "__main__":
    main()
