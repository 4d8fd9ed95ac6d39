"""Targeting: names, regex, all-linear, exclude, layers, patterns; strict errors; the dry run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import module_classes, tiny_bert, tiny_gpt2, tiny_llama, tiny_mixed
from lorakit import LoraConfig, TargetError, find_targets, inject, trainable_summary
from lorakit.model import lora_layers

BERT_QV = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]


def names(model: nn.Module, cfg: LoraConfig) -> list[str]:
    return [t.name for t in find_targets(model, cfg)]


def test_targets_as_names_match_dotted_suffix() -> None:
    assert names(tiny_bert(), LoraConfig(targets=["query", "value"])) == BERT_QV
    assert names(tiny_bert(), LoraConfig(targets=["self.query", "layer.1.attention.self.value"])) == [
        BERT_QV[0],
        BERT_QV[2],
        BERT_QV[3],
    ]


def test_target_name_is_not_a_substring_match() -> None:
    with pytest.raises(TargetError):
        find_targets(tiny_bert(), LoraConfig(targets=["uery"]))


def test_targets_as_regex_full_match() -> None:
    assert names(tiny_bert(), LoraConfig(targets=r".*\.(query|value)")) == BERT_QV
    assert names(tiny_bert(), LoraConfig(targets=r".*layer\.1\..*query")) == [BERT_QV[2]]


def _linear_names(model: nn.Module) -> set[str]:
    from transformers.pytorch_utils import Conv1D

    return {n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


@pytest.mark.parametrize(
    ("build", "heads"),
    [(tiny_bert, {"classifier"}), (tiny_gpt2, {"lm_head"}), (tiny_llama, {"lm_head"})],
)
def test_all_linear_excludes_only_the_output_head(build, heads: set[str]) -> None:
    model = build()
    got = set(names(model, LoraConfig(targets="all-linear")))
    assert got == _linear_names(model) - heads


def test_all_linear_agrees_with_peft() -> None:
    from peft import LoraConfig as PeftConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    for build, task in ((tiny_bert, "SEQ_CLS"), (tiny_gpt2, None), (tiny_llama, None)):
        model = build()
        peft_cfg = _maybe_include_all_linear_layers(
            PeftConfig(target_modules="all-linear", task_type=task), model
        )
        assert set(names(model, LoraConfig(targets="all-linear"))) == set(peft_cfg.target_modules)


def test_all_linear_excludes_score_head() -> None:
    class Scorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.score = nn.Linear(4, 2)
            # A RoBERTa-style head: a module of several Linears, all of it excluded.
            self.classifier = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))

    assert names(Scorer(), LoraConfig(targets="all-linear")) == ["body"]


def test_exclude_names_and_regex() -> None:
    cfg = LoraConfig(targets=["query", "value"], exclude=["layer.0.attention.self.value"])
    assert names(tiny_bert(), cfg) == [BERT_QV[0], BERT_QV[2], BERT_QV[3]]
    cfg = LoraConfig(targets="all-linear", exclude=r".*(mlp|o_proj).*")
    got = names(tiny_llama(), cfg)
    assert len(got) == 6 and all(n.split(".")[-1] in ("q_proj", "k_proj", "v_proj") for n in got)


def test_layers_restrict_blocks() -> None:
    cfg = LoraConfig(targets=["query", "value"], layers=[1])
    assert names(tiny_bert(), cfg) == BERT_QV[2:]
    cfg = LoraConfig(targets="all-linear", layers=[0], layers_pattern="h")
    assert all(n.startswith("transformer.h.0.") for n in names(tiny_gpt2(), cfg))


def test_rank_and_alpha_patterns_reach_the_layers() -> None:
    model = tiny_llama()
    cfg = LoraConfig(
        r=4, alpha=8, targets=["q_proj", "v_proj"], rank_pattern={"v_proj": 2}, alpha_pattern={"q_proj": 2}
    )
    inject(model, cfg)
    layers = dict(lora_layers(model))
    q, v = layers["model.layers.0.self_attn.q_proj"], layers["model.layers.0.self_attn.v_proj"]
    assert q.r["default"] == 4 and q.scaling["default"] == 0.5
    assert v.r["default"] == 2 and v.scaling["default"] == 4.0
    assert v.lora_A["default"].weight.shape == (2, 32)
    assert v.lora_B["default"].weight.shape == (16, 2)


def test_find_targets_shapes_and_exact_param_counts() -> None:
    got = find_targets(tiny_gpt2(), LoraConfig(r=4, targets=["c_attn", "c_fc"]))
    assert [(t.name, t.kind, t.in_features, t.out_features, t.added_params) for t in got] == [
        ("transformer.h.0.attn.c_attn", "Conv1D", 32, 96, 4 * 32 + 96 * 4),
        ("transformer.h.0.mlp.c_fc", "Conv1D", 32, 128, 4 * 32 + 128 * 4),
        ("transformer.h.1.attn.c_attn", "Conv1D", 32, 96, 512),
        ("transformer.h.1.mlp.c_fc", "Conv1D", 32, 128, 640),
    ]
    got = find_targets(tiny_mixed(), LoraConfig(r=2, alpha=4, targets=["emb", "conv", "conv1", "mlp.0"]))
    assert [(t.name, t.kind, t.in_features, t.out_features, t.r, t.added_params) for t in got] == [
        ("emb", "Embedding", 20, 8, 2, 2 * 20 + 8 * 2),
        ("conv", "Conv2d", 1, 4, 2, 2 * 1 * 3 * 3 + 4 * 2),
        ("conv1", "Conv1d", 8, 8, 2, 2 * 8 * 3 + 8 * 2),
        ("mlp.0", "Linear", 72, 16, 2, 2 * 72 + 16 * 2),
    ]
    assert all(t.scaling == 2.0 for t in got)
    got = find_targets(
        tiny_llama(), LoraConfig(r=4, targets=["k_proj"], rank_pattern={"layers.1.self_attn.k_proj": 8})
    )
    assert [(t.r, t.added_params) for t in got] == [(4, 4 * 32 + 16 * 4), (8, 8 * 32 + 16 * 8)]


@pytest.mark.parametrize("targets", [["query", "value"], "all-linear"])
def test_find_targets_count_equals_trainable_after_inject(targets) -> None:
    model = tiny_bert()
    cfg = LoraConfig(r=4, targets=targets)
    planned = sum(t.added_params for t in find_targets(model, cfg))
    classes = module_classes(model)
    assert module_classes(model) == classes  # the dry run changes nothing
    inject(model, cfg)
    summary = trainable_summary(model)
    assert summary.trainable == planned
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == planned


def test_unmatched_target_lists_closest_names() -> None:
    with pytest.raises(TargetError) as info:
        inject(tiny_bert(), LoraConfig(targets=["query", "valeu"]))
    msg = str(info.value)
    assert "'valeu'" in msg and "value" in msg.split("closest")[1]


def test_unmatched_regex_and_after_layers_filter() -> None:
    with pytest.raises(TargetError, match="matches no module"):
        find_targets(tiny_llama(), LoraConfig(targets=r".*\.qq_proj"))
    with pytest.raises(TargetError, match=r"layers=\[7\]"):
        find_targets(tiny_llama(), LoraConfig(targets=["q_proj"], layers=[7]))


def test_unsupported_target_type_named() -> None:
    with pytest.raises(TargetError, match=r"LlamaRMSNorm.*cannot adapt"):
        find_targets(tiny_llama(), LoraConfig(targets=["input_layernorm"]))


def test_failed_inject_leaves_model_unchanged() -> None:
    model = tiny_bert()
    classes = module_classes(model)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    for cfg in (
        LoraConfig(targets=["nope"]),
        LoraConfig(targets=["query"], modules_to_save=["no_such_head"]),
        LoraConfig(targets=["LayerNorm"]),
    ):
        with pytest.raises(TargetError):
            inject(model, cfg)
        assert module_classes(model) == classes
        assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
        assert "_lorakit" not in model.__dict__
    inject(model, LoraConfig(targets=["query"]))  # still usable afterwards


def test_grouped_conv_target_refused_before_anything_changes() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv2d(4, 4, 3, groups=2))
    classes = module_classes(model)
    with pytest.raises(TargetError, match="groups=2"):
        inject(model, LoraConfig(targets=["0", "1"]))
    assert module_classes(model) == classes
    assert all(p.requires_grad for p in model.parameters())
    assert "_lorakit" not in model.__dict__


def test_no_lora_inside_modules_to_save(tmp_path) -> None:
    from lorakit import add_adapter, load_adapter, save_adapter

    model = tiny_bert()
    inject(model, LoraConfig(targets=["dense"], modules_to_save=["pooler"]))
    adapted = [n for n, _ in lora_layers(model)]
    assert len(adapted) == 6 and not any("pooler" in n for n in adapted)
    assert type(model.bert.pooler.modules_to_save["default"].dense) is nn.Linear
    save_adapter(model, tmp_path)
    load_adapter(tiny_bert(), tmp_path)
    with pytest.raises(
        TargetError, match=r"'classifier' matches no module.*modules_to_save=\['classifier'\]"
    ):
        inject(tiny_bert(), LoraConfig(targets=["classifier"], modules_to_save=["classifier"]))
    with pytest.raises(TargetError, match=r"bert\.encoder\.layer\.0\.output\.dense already holds a LoRA"):
        add_adapter(model, "other", LoraConfig(targets=["query"], modules_to_save=["layer.0.output"]))


def test_inject_twice_refused() -> None:
    model = inject(tiny_bert(), LoraConfig(targets=["query"]))
    with pytest.raises(ValueError, match="add_adapter"):
        inject(model, LoraConfig(targets=["value"]))


def test_trainable_summary_table() -> None:
    model = inject(tiny_bert(), LoraConfig(r=2, targets=["query"], modules_to_save=["classifier"]))
    s = trainable_summary(model)
    total = sum(p.numel() for p in model.parameters())
    assert s.total == total
    per = dict(s.per_module)
    assert per["bert.encoder.layer.0.attention.self.query"] == 2 * 32 + 32 * 2
    assert per["classifier"] == 32 * 3 + 3
    biased = trainable_summary(inject(tiny_bert(), LoraConfig(r=2, targets=["query"], bias="lora_only")))
    assert dict(biased.per_module)["bert.encoder.layer.0.attention.self.query"] == 2 * 64 + 32
    assert s.trainable == 2 * 128 + 99
    assert abs(s.percent - 100 * s.trainable / total) < 1e-12
    assert "trainable params: 355" in str(s)
    assert torch.is_grad_enabled()
