"""One adapted layer, forward + backward: lorakit's fused node vs its two frozen products alone.

The difference is what the adapter itself costs on top of the base layer's products (on the
same GEMM library), i.e. the most any further LoRA-side optimisation could still save.

    python bench/layer_time.py                  # SmolLM2 q_proj / v_proj and MiniLM shapes
    python bench/layer_time.py --rows 2048
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import lorakit
from lorakit.layers import LoraLinear, gemm

SHAPES = {"smollm2 q_proj": (576, 576), "smollm2 v_proj": (576, 192), "minilm query": (384, 384)}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def layer(fan_in: int, fan_out: int, r: int) -> LoraLinear:
    torch.manual_seed(0)
    lay = LoraLinear(nn.Linear(fan_in, fan_out, bias=False).requires_grad_(False))
    lay.add_adapter("a", r=r, scaling=2.0, dropout=0.0, init="kaiming")
    lay.active_adapters = ["a"]
    nn.init.normal_(lay.lora_B["a"].weight)
    return lay


def measure(name: str, rows: int, r: int, repeats: int) -> dict[str, float]:
    fan_in, fan_out = SHAPES[name]
    lay = layer(fan_in, fan_out, r)
    x = torch.randn(rows, fan_in, requires_grad=True)
    g = torch.randn(rows, fan_out)
    w = lay.base_layer.weight

    def step() -> None:
        lay(x).backward(g)
        x.grad = None
        for p in lay.parameters():
            p.grad = None

    def products() -> None:  # the frozen layer's own work: output and input gradient
        with torch.no_grad():
            gemm.linear(x, w)
            gemm.mm(g, w)

    out = {}
    for backend in (lorakit.MatmulBackend.AUTO, lorakit.MatmulBackend.TORCH):
        with lorakit.matmul_backend(backend):
            out[f"fused_{backend.value}_ms"] = median_ms(step, repeats)
            out[f"products_{backend.value}_ms"] = median_ms(products, repeats)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=512, help="tokens per step (SmolLM2 bench: 4 x 128)")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(common.THREADS)
    print(f"rows {args.rows}, r {args.r}; median ms of forward + backward\n")
    print("| layer | fused (auto) | products (auto) | adapter cost | fused (torch) | products (torch) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in SHAPES:
        m = measure(name, args.rows, args.r, args.repeats)
        cost = m["fused_auto_ms"] - m["products_auto_ms"]
        print(
            f"| {name} | {m['fused_auto_ms']:.3f} | {m['products_auto_ms']:.3f} | {cost:.3f} "
            f"| {m['fused_torch_ms']:.3f} | {m['products_torch_ms']:.3f} |"
        )


if __name__ == "__main__":
    main()
