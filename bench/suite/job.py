"""One job of `make results` in its own process (so its peak memory is its own):

    python -m bench.suite.job SPEC.json

SPEC: {"method", "config", "result"}. lorakit methods run `lorakit.training.train` itself; PEFT
LoRA and full fine-tuning run through the same loop (same batches, schedule, evaluation) with
another model builder; "base" evaluates the base model. Writes the result JSON atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

from lorakit.config import LoraConfig
from lorakit.runconfig.schema import RunConfig
from lorakit.targeting import find_targets
from lorakit.training.setup import seed_everything


def peft_builder(config: RunConfig, task: Any, device: torch.device) -> tuple[nn.Module, LoraConfig]:
    """PEFT's LoRA on exactly the modules lorakit would adapt, same r / alpha / dropout / head."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    seed_everything(config.train.seed)
    base = task.load_model()
    lora = config.lora.with_saved_default(task.head_modules(base))
    names = [t.name for t in find_targets(base, lora)]
    pcfg = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=names,
        modules_to_save=lora.modules_to_save or None,
    )
    return get_peft_model(base, pcfg).to(device), lora


def full_builder(config: RunConfig, task: Any, device: torch.device) -> tuple[nn.Module, LoraConfig]:
    seed_everything(config.train.seed)
    model = task.load_model()
    model.requires_grad_(True)
    return model.to(device), config.lora.with_saved_default(task.head_modules(model))


def train_other(config: RunConfig, builder: Any) -> dict[str, Any]:
    from lorakit.training.loop import build_summary, training_loop
    from lorakit.training.reporting import Reporter
    from lorakit.training.setup import setup_run

    start = time.perf_counter()
    run = setup_run(config, build_model=builder)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(run.output_dir)
    reporter.start(0, run.total_steps)
    status = training_loop(run, reporter)
    summary = build_summary(run, status, None, time.perf_counter() - start, None)
    reporter.finish(summary)
    return summary


def evaluate_base(config: RunConfig) -> dict[str, Any]:
    from lorakit.data.splits import resolve_split
    from lorakit.metrics import scalar_metrics
    from lorakit.training.evaluation import base_for_inference
    from lorakit.training.loop import peak_memory_mb

    start = time.perf_counter()
    records, source = resolve_split(config.data, "validation")
    task, model = base_for_inference(config)
    metrics = task.evaluate(model, records, task.encode(records, source))
    return {
        "status": "completed",
        "final_metrics": metrics,
        "best_metric": scalar_metrics(metrics).get(config.train.metric_for_best or "loss"),
        "trainable_params": 0,
        "total_params": sum(p.numel() for p in model.parameters()),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "peak_memory_mb": round(peak_memory_mb(torch.device("cpu")), 1),
        "final_step": 0,
    }


def main() -> None:
    from lorakit.runconfig.yaml_io import validate_config
    from lorakit.training.loop import train

    spec = json.loads(Path(sys.argv[1]).read_text())
    config = validate_config(spec["config"], source=sys.argv[1])
    method = spec["method"]
    t0 = time.perf_counter()
    if method == "base":
        summary = evaluate_base(config)
    elif method.startswith("lorakit"):
        summary = train(config)
    else:
        summary = train_other(config, peft_builder if method == "peft-qv" else full_builder)
    result = {
        **{k: v for k, v in spec.items() if k != "config"},
        "summary": summary,
        "process_wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
    }
    out = Path(spec["result"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
