"""Evaluation outside a training run: the base model, before any adapter is trained."""

from __future__ import annotations

from torch import nn

from lorakit.data.splits import load_splits
from lorakit.model_sources import load_tokenizer, resolve_model
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks import Task, build_task, labels_for
from lorakit.training.setup import pick_device, quantize_base, seed_everything


def base_for_inference(config: RunConfig) -> tuple[Task, nn.Module]:
    """The task and the base model without adapter (a new head is initialised from train.seed),
    quantized when the config says so."""
    device = pick_device(config)
    ref = resolve_model(config.model)
    labels = None
    if config.task in ("classification", "token_classification"):
        splits = load_splits(config.data, ("train",))
        labels = labels_for(config, splits.records["train"], splits.sources["train"])
    task = build_task(config, ref, load_tokenizer(ref), labels)
    seed_everything(config.train.seed)
    model = task.load_model()
    quantize_base(config, task, model)  # the base training starts from
    return task, model.to(device).eval()
