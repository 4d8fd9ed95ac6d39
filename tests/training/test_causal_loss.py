"""CausalLMWithChunkedLoss: the model's own causal-LM loss and LoRA gradients, without full logits.

And a training run on the fast paths (chunked loss, frozen layers, GatedMLP) ends with the adapter of
a run without them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import lorakit
from conftest import randomize_lora, tiny_gpt2, tiny_llama
from lorakit.layers import gemm
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.causal_loss import CausalLMWithChunkedLoss, chunked_loss_problem
from lorakit.training.loop import train
from tiny_assets import write_run

Backend = gemm.MatmulBackend
BACKENDS = [Backend.TORCH] + ([Backend.ONEDNN] if gemm.onednn_available() else [])


def _batch() -> dict[str, torch.Tensor]:
    """Two sequences: a masked prompt, and right padding on the shorter one."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 99, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.clone()
    labels[:, :4] = -100  # prompt
    labels[1, 9:] = -100  # padding
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _lora_model(make=tiny_llama, frozen_path: bool = False) -> nn.Module:
    targets = ["q_proj", "v_proj"] if make is tiny_llama else ["c_attn"]
    model = lorakit.inject(make(), lorakit.LoraConfig(r=4, targets=targets))
    randomize_lora(model)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if frozen_path:
        lorakit.wrap_frozen_layers(model)
    return model.train()


def _loss_and_lora_grads(module: nn.Module, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``module``'s loss (module: the model or its wrapper) and the gradients of ``model``."""
    loss = module(**_batch()).loss
    (loss * 2.0).backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("frozen_path", [False, True], ids=["plain-layers", "frozen-path"])
def test_same_loss_and_adapter_gradients_as_the_model_own_loss(
    backend: Backend, make, frozen_path: bool
) -> None:
    model = _lora_model(make, frozen_path)
    with gemm.matmul_backend(backend):
        ref_model = copy.deepcopy(model)
        ref_loss, ref_grads = _loss_and_lora_grads(ref_model, ref_model)
        loss, grads = _loss_and_lora_grads(CausalLMWithChunkedLoss(model, chunk_rows=5), model)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys() and sum("lora_B" in k for k in grads) >= 2
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_without_gradients_forward_is_the_model_own() -> None:
    model = _lora_model()
    wrapper = CausalLMWithChunkedLoss(model)
    with torch.no_grad():
        ours, theirs = wrapper(**_batch()), model(**_batch())
    assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.loss, theirs.loss)
    assert wrapper.config is model.config
    prompt = _batch()["input_ids"][:1, :5]
    assert torch.equal(
        wrapper.generate(prompt, max_new_tokens=3, do_sample=False),
        model.generate(prompt, max_new_tokens=3, do_sample=False),
    )


def test_start_up_check_accepts_plain_heads_and_names_what_does_not_fit() -> None:
    batch = _batch()
    for make in (tiny_llama, tiny_gpt2):
        assert chunked_loss_problem(CausalLMWithChunkedLoss(_lora_model(make)), batch) is None
    odd_head = _lora_model()
    odd_head.lm_head = nn.Sequential(odd_head.lm_head)
    assert "not a plain nn.Linear" in chunked_loss_problem(CausalLMWithChunkedLoss(odd_head), batch)


def test_start_up_check_refuses_a_model_whose_loss_differs() -> None:
    """Gemma-2 soft-caps its logits: the same head and body, a different loss."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(
        vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5,
    )  # fmt: skip
    problem = chunked_loss_problem(CausalLMWithChunkedLoss(Gemma2ForCausalLM(cfg)), _batch())
    assert problem is not None and "differs from the model's own" in problem


def test_training_on_the_fast_paths_gives_the_plain_adapter(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from lorakit.training import causal_loss

    calls = []
    real = causal_loss.chunked_cross_entropy
    monkeypatch.setattr(causal_loss, "chunked_cross_entropy", lambda *a: calls.append(1) or real(*a))
    # all-linear: LoRA layers inside the MLPs that GatedMLP takes over, the LM head frozen.
    common = ["train.max_steps=6", "train.eval_every=3", "train.save_every=null", "lora.targets=all-linear"]
    plain = ["train.chunked_lm_loss=false", "train.frozen_fast_path=false", "train.lean_activations=false"]
    summaries = {}
    for fast in (True, False):
        cfg = write_run(tmp_path / str(fast), "causal_lm", tiny_dirs["llama"])
        summaries[fast] = train(load_config(cfg, common + ([] if fast else plain)))
    assert summaries[True]["status"] == summaries[False]["status"] == "completed"
    assert len(calls) == 1 + 6  # the start-up check, then one per step: the chunked run used it
    a, b = (
        load_file(tmp_path / str(c) / "run" / "adapter" / "adapter_model.safetensors") for c in (True, False)
    )
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=key)


def test_fast_paths_apply_to_lorakit_own_model_only(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    """A benchmark's own builder (PEFT, full fine-tuning in `make results`) trains its model as built."""
    from lorakit.layers.frozen import FrozenLinear
    from lorakit.training.setup import prepare_model, setup_run

    cfg = load_config(write_run(tmp_path, "causal_lm", tiny_dirs["llama"]), ["train.max_steps=1"])
    own = setup_run(cfg)
    other = setup_run(cfg, build_model=lambda *a: prepare_model(*a))
    assert isinstance(own.parallel_model, CausalLMWithChunkedLoss)
    assert any(isinstance(m, FrozenLinear) for m in own.model.modules())
    assert other.parallel_model is other.model
    assert not any(isinstance(m, FrozenLinear) for m in other.model.modules())
