"""``trainable_summary``: what trains, per module and in total."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TrainableSummary:
    trainable: int
    total: int
    per_module: list[tuple[str, int]]

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        width = max([len(n) for n, _ in self.per_module] + [6])
        lines = [f"{'module':<{width}}  trainable"]
        lines += [f"{n:<{width}}  {c:>9,}" for n, c in self.per_module]
        lines.append(
            f"trainable params: {self.trainable:,} || all params: {self.total:,} "
            f"|| trainable%: {self.percent:.4f}"
        )
        return "\n".join(lines)


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Trainable / total parameter counts, and trainable counts grouped by owning module."""
    per: dict[str, int] = {}
    trainable = total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
            owner = name.rsplit(".", 1)[0]
            for marker in (".lora_", ".modules_to_save.", ".base_layer"):
                if marker in owner:
                    owner = owner.split(marker)[0]
            per[owner] = per.get(owner, 0) + p.numel()
    return TrainableSummary(trainable, total, sorted(per.items()))
