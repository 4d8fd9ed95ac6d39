"""AdamW over trainable parameters (optionally LoRA+ with a higher lr for B) and the lr schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lorakit.runconfig.schema import TrainSection


def build_optimizer(model: nn.Module, cfg: TrainSection) -> torch.optim.AdamW:
    """AdamW over parameters that require grad only: the frozen base never reaches the optimizer.

    Parameter groups: (A and other trainables, decayed), (biases/norms, no decay), and with
    ``lr_ratio_b`` a group for the B matrices at lr x lr_ratio_b (LoRA+).
    """
    groups: dict[str, list[nn.Parameter]] = {"default": [], "no_decay": [], "lora_b": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.lr_ratio_b is not None and (".lora_B." in name or ".lora_embedding_B." in name):
            groups["lora_b"].append(p)
        elif p.dim() < 2:
            groups["no_decay"].append(p)
        else:
            groups["default"].append(p)
    ratio = cfg.lr_ratio_b or 1.0
    spec = [
        {"params": groups["default"], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": groups["no_decay"], "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": groups["lora_b"], "weight_decay": cfg.weight_decay, "lr_scale": ratio},
    ]
    spec = [g for g in spec if g["params"]]
    for g in spec:
        g["lr"] = cfg.lr * g["lr_scale"]
    # foreach=False: the same kernel on every run keeps resumed runs bit-identical.
    return torch.optim.AdamW(spec, lr=cfg.lr, foreach=False)


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up then cosine / linear decay to 0, or constant. A pure function of the step."""

    kind: str
    peak_lr: float
    warmup_steps: int
    total_steps: int

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr used for optimizer step number ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.peak_lr * self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def state(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def build_schedule(cfg: TrainSection, total_steps: int) -> Schedule:
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * total_steps)
    return Schedule(cfg.scheduler, cfg.lr, min(warmup, total_steps), total_steps)
