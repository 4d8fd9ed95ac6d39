"""Inference throughput: base model vs merged adapter vs unmerged adapter (forward only).

Variants of one model run interleaved in one process on the same batch; ratios of medians to
the base. "merged" keeps the lorakit wrappers (``lorakit.merge``), "merged+unloaded" gives back
plain modules (``lorakit.merge_and_unload``), "unmerged" runs base + low-rank update each call
(on lorakit's default GEMM backend; "unmerged-torchgemm" on torch's own GEMM).

    python bench/inference.py --models minilm-l6 --repeats 20
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

# Set before torch loads OpenMP; see common.py for why.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import lorakit


def randomized(net: torch.nn.Module) -> torch.nn.Module:
    """A trained-looking adapter: B non-zero so the update really changes the output."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    return net


def variants(model: str, base: torch.nn.Module) -> dict[str, torch.nn.Module]:
    out = {"base": copy.deepcopy(base)}
    for target_set, targets in common.TARGET_SETS[model].items():
        # As `lorakit eval` / `predict` load it: LoRA layers only (the training-only wrappers,
        # frozen-layer path and chunked loss, are not applied to inference models).
        adapted = randomized(common.build("lorakit-fusedonly", model, base, targets))
        out[f"unmerged/{target_set}"] = adapted
        out[f"unmerged-torchgemm/{target_set}"] = copy.deepcopy(adapted)
        out[f"merged/{target_set}"] = lorakit.merge(copy.deepcopy(adapted))
        out[f"merged+unloaded/{target_set}"] = lorakit.merge_and_unload(copy.deepcopy(adapted))
        out[f"peft-unmerged/{target_set}"] = randomized(common.build("peft", model, base, targets))
    for net in out.values():
        net.eval()
    return out


def bench_model(model: str, repeats: int) -> dict[str, object]:
    base = common.load_base(model)
    nets = variants(model, base)
    batch = common.make_batch(model, base)
    batch.pop("labels")

    def forward(net: torch.nn.Module, backend: lorakit.MatmulBackend) -> None:
        with torch.inference_mode(), lorakit.matmul_backend(backend):
            net(**batch)

    with torch.inference_mode():
        ref = nets[f"unmerged/{next(iter(common.TARGET_SETS[model]))}"](**batch).logits
        merged = nets[f"merged/{next(iter(common.TARGET_SETS[model]))}"](**batch).logits
    max_diff = float((ref - merged).abs().max())
    load_before = os.getloadavg()
    backends = {n: common.backend_for(n) for n in nets}
    fns = {n: (lambda m=m, b=backends[n]: forward(m, b)) for n, m in nets.items()}
    timings = common.interleave(fns, repeats)
    base_med = timings["base"].median
    base_cpu = timings["base"].summary()["cpu_median_s"]
    tokens = batch["input_ids"].numel()
    return {
        "shape": common.SHAPES[model],
        "merged_vs_unmerged_max_abs_diff": max_diff,
        "timings": {n: t.summary() for n, t in timings.items()},
        "tokens_per_s": {n: tokens / t.median for n, t in timings.items()},
        "ratio_to_base": {n: t.median / base_med for n, t in timings.items()},
        "cpu_ratio_to_base": {n: t.summary()["cpu_median_s"] / base_cpu for n, t in timings.items()},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def markdown(results: dict[str, dict]) -> str:
    lines = []
    for model, res in results.items():
        b, t = res["shape"]
        lines += [
            f"### {model} forward (batch {b}, length {t}; load {res['loadavg_before'][0]:.2f})",
            "",
            "| variant | median ms | min ms | tokens/s | vs base | CPU vs base |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, tm in res["timings"].items():
            lines.append(
                f"| {name} | {tm['median_s'] * 1e3:.1f} | {tm['min_s'] * 1e3:.1f} "
                f"| {res['tokens_per_s'][name]:.0f} | {res['ratio_to_base'][name]:.3f} "
                f"| {res['cpu_ratio_to_base'][name]:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(common.MODELS), choices=common.MODELS)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "inference.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(common.THREADS)
    results = {}
    for model in args.models:
        results[model] = bench_model(model, args.repeats)
        print(markdown({model: results[model]}), flush=True)
    common.write_json(args.out, {"machine": common.machine(), "results": results})
    args.out.with_suffix(".md").write_text(markdown(results))


if __name__ == "__main__":
    main()
