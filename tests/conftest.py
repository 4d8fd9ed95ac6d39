"""Tiny models built from configs (no downloads) shared by the tests."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the extra
# thread spins: one thread cut the suite's CPU time by more than half.
torch.set_num_threads(1)


def tiny_bert(num_labels: int = 3) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


class TinyMixed(nn.Module):
    """A hand-made model with every supported layer type."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv1d(8, 8, 3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(8 + 4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, ids: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        e = self.emb(ids)  # (b, t, 8)
        e = self.conv1(e.transpose(1, 2)).mean(-1)  # (b, 8)
        c = self.conv(image).flatten(1)  # (b, 64)
        return self.mlp(torch.cat([e, c], dim=-1))


def tiny_mixed() -> nn.Module:
    torch.manual_seed(0)
    return TinyMixed().eval()


def text_inputs(batch: int = 2, length: int = 7, vocab: int = 99) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, vocab, (batch, length), generator=g)}


def mixed_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "ids": torch.randint(0, 20, (2, 6), generator=g),
        "image": torch.randn(2, 1, 4, 4, generator=g),
    }


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


MODELS = {
    "bert": (tiny_bert, text_inputs, ["query", "value"]),
    "gpt2": (tiny_gpt2, text_inputs, ["c_attn"]),
    "llama": (tiny_llama, text_inputs, ["q_proj", "v_proj"]),
    "mixed": (tiny_mixed, mixed_inputs, ["emb", "conv", "conv1", "mlp.0"]),
}


@pytest.fixture(params=sorted(MODELS))
def any_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module, dict, list[str]]:
    build, inputs, targets = MODELS[request.param]
    return request.param, build(), inputs(), targets


def randomize_lora(model: nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Give every LoRA tensor non-zero values so the adapter changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def base_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Clones of every base parameter and buffer, keyed by the name it has without lorakit.

    LoRA tensors and modules_to_save copies are left out; wrapper path segments are removed so
    the keys of a wrapped model equal those of the plain model.
    """
    out: dict[str, torch.Tensor] = {}
    items = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in items:
        if ".lora_" in name or ".modules_to_save." in name:
            continue
        key = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        out[key] = t.detach().clone()
    return out


def all_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Clones of every parameter and buffer under its current name."""
    items = list(model.named_parameters()) + list(model.named_buffers())
    return {name: t.detach().clone() for name, t in items}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def module_classes(model: nn.Module) -> dict[str, str]:
    return {name: type(m).__name__ for name, m in model.named_modules()}


def adapter_tensors(model: nn.Module, name: str = "default") -> dict[str, torch.Tensor]:
    """Clones of what adapter ``name`` saves, under its file keys."""
    from lorakit.adapter_io.keys import adapter_entries

    return {k: v.detach().clone() for k, v in adapter_entries(model, name).items()}
