"""Where the resident memory of a MiniLM-L6 token-classification run on CoNLL-2003 goes.

Builds the run exactly as `lorakit train` does (batch 32, max_length 128), then records the
resident set size (VmRSS) and its peak (VmHWM) after each phase: imports, data + tokenisation,
model, optimizer steps on the longest batches (the worst case for activations), and a full
validation pass. Prints one JSON object.

    python bench/conll_memory.py --steps 30 [--backend torch|onednn|auto] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "conll2003"


def rss_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], help="dotted config override")
    ap.add_argument("--trim", type=int, default=0, help="malloc_trim every N steps (0: never)")
    ap.add_argument(
        "--order",
        choices=["longest", "epoch"],
        default="longest",
        help="longest: the longest batches (worst case); epoch: the run's own batch order",
    )
    args = ap.parse_args()
    phases: dict[str, dict[str, float]] = {"start": rss_mb()}
    import torch

    from lorakit.heap import trim_heap
    from lorakit.runconfig.yaml_io import apply_override, parse_override, validate_config
    from lorakit.training.loop import draw_steps, evaluate, train_step
    from lorakit.training.reporting import Reporter
    from lorakit.training.setup import setup_run

    phases["imports"] = rss_mb()
    cfg = {
        "model": "minilm-l6",
        "task": "token_classification",
        "data": {
            "train": str(DATA / "train.conll"),
            "validation": str(DATA / "validation.conll"),
            "max_length": 128,
        },
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["query", "value"]},
        "train": {
            "max_steps": args.steps,
            "batch_size": 32,
            "lr": 1e-3,
            "save_every": None,
            "keep_best": False,
        },
        "output_dir": str(ROOT / "build" / "conll_memory"),
    }
    for text in args.set:
        apply_override(cfg, *parse_override(text))
    config = validate_config(cfg, source="conll_memory")
    run = setup_run(config)
    phases["setup (data, tokenised features, model, optimizer)"] = rss_mb()
    reporter = Reporter(run.output_dir, is_main=False)
    longest = sorted(range(len(run.lengths)), key=lambda i: -run.lengths[i])
    steps = draw_steps(run)
    t0 = time.perf_counter()
    run.model.train()
    for s in range(args.steps):
        batches = [longest[s * 32 : (s + 1) * 32]] if args.order == "longest" else next(steps)
        train_step(run, batches, reporter)
        run.state.step += 1
        if args.trim and run.state.step % args.trim == 0:
            trim_heap()
    phases[f"{args.steps} train steps ({args.order} batches)"] = rss_mb()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(run, reporter)
    phases["validation pass (3,250 sentences)"] = rss_mb()
    out = {
        "phases": phases,
        "max_tokens_per_batch": max(run.lengths),
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - t0, 1),
        "f1": run.last_eval.get("f1") if run.last_eval else None,
        "overrides": args.set,
        "trim_every": args.trim,
        "threads": torch.get_num_threads(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
