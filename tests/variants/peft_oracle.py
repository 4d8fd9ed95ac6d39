"""PEFT as the reference implementation: the same adapter weights in both tools."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn

PEFT_PREFIX = "base_model.model."


def perturb_magnitudes(model: nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    """Move every DoRA magnitude away from ||W0|| (a plain randomize would make it ~0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude_vector" in name:
                p.mul_(1 + scale * torch.randn(p.shape, generator=g))


def randomize_ab(model: nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def peft_load(build: Callable[[], nn.Module], folder: Path, trainable: bool = False) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(build(), str(folder), is_trainable=trainable).eval()


def peft_random(
    build: Callable[[], nn.Module], targets: list[str], folder: Path, **kwargs: object
) -> nn.Module:
    """A PEFT adapter with random A, B (and perturbed magnitudes), saved to ``folder``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(build(), PeftLoraConfig(target_modules=targets, **kwargs))
    randomize_ab(model, seed=3)
    perturb_magnitudes(model, seed=4)
    model.save_pretrained(str(folder))
    return model.eval()


def lorakit_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def peft_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n.removeprefix(PEFT_PREFIX): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def loss_of(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**inputs)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return (logits.float() ** 2).mean()
