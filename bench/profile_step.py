"""torch.profiler table of one LoRA training step: where the time goes, per variant.

python bench/profile_step.py --model minilm-l6 --targets all-linear --variants lorakit peft full
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Set before torch loads OpenMP; see common.py for why.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def profile_variant(kind: str, model: str, base: torch.nn.Module, targets, steps: int, rows: int) -> str:
    net = common.build(kind, model, base, targets)
    net.train()
    common.set_dropout(net, 0.0)
    opt = common.optimizer(net)
    batch = common.make_batch(model, net)
    backend = common.backend_for(kind)
    for _ in range(2):
        common.train_step(net, opt, batch, backend)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            common.train_step(net, opt, batch, backend)
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=rows)
    summary = category_table(averages, steps)
    return f"#### {kind} ({model}, {targets}, {steps} steps)\n\n{summary}\n```\n{table}\n```\n"


# Which kind of work each operator is (self CPU time), for the summary above each table; a name
# ending in * is a prefix.
CATEGORIES = [
    ("GEMM on oneDNN", ("mkldnn::_linear_pointwise",)),
    ("GEMM on torch (MKL)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("LoRA rank-r updates (addmm_)", ("aten::addmm_",)),
    ("attention (SDPA)", ("aten::_scaled_dot_product*",)),
    ("LM-head softmax / loss", ("aten::_log_softmax*", "aten::nll_loss*", "aten::exp_", "aten::amax",
                                 "aten::sub_", "aten::gather", "aten::scatter_add_", "aten::logsumexp")),
    ("copies and fills", ("aten::copy_", "aten::fill_", "aten::zero_", "aten::clone", "aten::index_select",
                          "aten::index_copy_")),
    ("elementwise (norms, RoPE, activations, residuals)", ("aten::mul", "aten::mul_", "aten::add",
     "aten::add_", "aten::silu", "aten::silu_backward", "aten::gelu", "aten::gelu_backward", "aten::pow",
     "aten::rsqrt", "aten::neg", "aten::cat", "aten::div", "aten::mean", "aten::sum", "aten::sqrt",
     "aten::native_layer_norm*", "aten::tanh", "aten::sigmoid")),
]  # fmt: skip


def _category(name: str) -> str:
    for cat, names in CATEGORIES:
        if any(name == n or (n.endswith("*") and name.startswith(n[:-1])) for n in names):
            return cat
    return "everything else"


def category_table(averages, steps: int) -> str:
    """Self CPU milliseconds per step by kind of work, and the share of the step."""
    total = sum(e.self_cpu_time_total for e in averages)
    sums = dict.fromkeys([c for c, _ in CATEGORIES] + ["everything else"], 0.0)
    for e in averages:
        sums[_category(e.key)] += e.self_cpu_time_total
    lines = ["| kind of work | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {c} | {v / 1e3 / steps:.0f} | {v / total:.1%} |" for c, v in sums.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="minilm-l6", choices=common.MODELS)
    ap.add_argument("--targets", default="all-linear")
    ap.add_argument("--variants", nargs="+", default=["lorakit", "peft", "full"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=18)
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(common.THREADS)
    targets = common.TARGET_SETS[args.model][args.targets]
    base = common.load_base(args.model)
    text = "".join(
        profile_variant(k, args.model, base, targets, args.steps, args.rows) for k in args.variants
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
