"""Warm-up + decay, AdamW over trainable parameters only, LoRA+ learning rate for B."""

from __future__ import annotations

import pytest

from lorakit.config import LoraConfig
from lorakit.model import inject
from lorakit.runconfig.schema import TrainSection
from lorakit.training.optim import build_optimizer, build_schedule


def test_schedule_shapes() -> None:
    s = build_schedule(TrainSection(lr=1.0, warmup_steps=10, scheduler="cosine"), 110)
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(60) == pytest.approx(0.5) and s.factor(109) < 0.01
    lin = build_schedule(TrainSection(lr=1.0, warmup_ratio=0.0, scheduler="linear"), 100)
    assert lin.factor(50) == pytest.approx(0.5)
    assert build_schedule(TrainSection(scheduler="constant", warmup_ratio=0), 10).factor(7) == 1.0


def test_optimizer_holds_only_trainable_and_lora_plus() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20
        )
    )
    inject(model, LoraConfig(r=2, targets=["query"], modules_to_save=["classifier"]))
    opt = build_optimizer(model, TrainSection(lr=1e-3, lr_ratio_b=16))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}
    b_ids = {id(p) for n, p in model.named_parameters() if ".lora_B." in n}
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        assert g["lr"] == pytest.approx(16e-3 if ids <= b_ids else 1e-3)
        assert ids <= b_ids or not ids & b_ids
