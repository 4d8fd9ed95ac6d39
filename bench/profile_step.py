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
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return f"#### {kind} ({model}, {targets}, {steps} steps)\n\n```\n{table}\n```\n"


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
