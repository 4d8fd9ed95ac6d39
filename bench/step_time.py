"""Training-step time and peak memory: lorakit LoRA vs PEFT LoRA vs full fine-tuning.

All variants of one model run interleaved in one process on the same batch (the order rotates
every round), so load from other processes hits them alike; we report medians, min/max and
ratios of medians. Peak memory is measured per variant in fresh subprocesses (the median of
``MEMORY_REPEATS``): after building the model the peak-RSS counter is reset
(``/proc/self/clear_refs``), a few steps run, and the growth of the peak over the resting RSS is
the step's memory (activations, gradients, optimizer state). ``--memory-only`` re-probes the
memory of variants already in the results file and leaves their timings alone.

    python bench/step_time.py                      # both models, both target sets
    python bench/step_time.py --models minilm-l6 --repeats 10
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# Set before torch loads OpenMP; see common.py for why.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

KINDS = {
    "minilm-l6": ["lorakit", "lorakit-torchgemm", "lorakit-nofrozen", "peft"],
    "smollm2-135m": [
        "lorakit",
        "lorakit-torchgemm",
        "lorakit-nochunk",
        "lorakit-nofrozen",
        "lorakit-nolean",
        "lorakit-gc",
        "peft",
    ],
}
"""Per target set; "full", "floor" (torch's GEMM, plain loss) and "floor-lorakit" (lorakit's frozen
path and chunked loss) once per model. The classifier has no LM head, so no chunked-loss row."""
PROBE_STEPS = 3
MEMORY_REPEATS = 3
"""Fresh processes per variant for the step-memory figure (the median is reported)."""
ATTRIBUTION = [
    "lorakit-torchgemm",
    "lorakit-nochunk",
    "lorakit-nofrozen",
    "lorakit-nolean",
    "lorakit-gc",
    "lorakit-plain",
]


def variant_name(kind: str, target_set: str) -> str:
    return "full" if kind == "full" else f"{kind}/{target_set}"


def build_variants(
    model: str,
    plain: bool,
    dropout: float,
    only: list[str] | None = None,
    target_sets: list[str] | None = None,
) -> dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]:
    base = common.load_base(model)
    out = {}
    if dropout > 0:  # only the adapters' dropout is on; the model's own stays off as everywhere here
        targets = common.TARGET_SETS[model]["all-linear"]
        for kind in ("lorakit", "peft"):
            out[f"{kind}+dropout/all-linear"] = common.build(kind, model, base, targets, dropout=dropout)
    kinds = [*KINDS[model], "lorakit-plain"] if plain else KINDS[model]
    for target_set, targets in common.TARGET_SETS[model].items():
        for kind in kinds:
            if (not only or kind in only) and (not target_sets or target_set in target_sets):
                out[variant_name(kind, target_set)] = common.build(kind, model, base, targets)
    for kind in ("full", "floor", "floor-lorakit"):
        if not only or kind in only:
            out[kind] = common.build(kind, model, base, None)
    variants = {}
    for name, net in out.items():
        net.train()
        common.set_dropout(net, 0.0)  # deterministic steps; LoRA dropout is 0 as well
        variants[name] = (net, common.optimizer(net))
    return variants


def time_model(
    model: str,
    repeats: int,
    plain: bool,
    dropout: float,
    only: list[str] | None = None,
    target_sets: list[str] | None = None,
) -> dict[str, object]:
    variants = build_variants(model, plain, dropout, only, target_sets)
    batch = common.make_batch(model, next(iter(variants.values()))[0])
    losses = {
        n: common.train_step(net, opt, batch, common.backend_for(n)) for n, (net, opt) in variants.items()
    }
    backends = {n: common.backend_for(n) for n in variants}
    fns = {
        n: (lambda v=v, b=backends[n]: common.train_step(v[0], v[1], batch, b)) for n, v in variants.items()
    }
    load_before = os.getloadavg()
    timings = common.interleave(fns, repeats)
    med = {n: t.median for n, t in timings.items()}
    cpu = {n: t.summary()["cpu_median_s"] for n, t in timings.items()}
    ratios, cpu_ratios = step_ratios(model, med), step_ratios(model, cpu)
    cpu_ratios = {k: v for k, v in cpu_ratios.items() if not k.endswith("peft/full")}
    if dropout > 0:
        lk, pf = med["lorakit+dropout/all-linear"], med["peft+dropout/all-linear"]
        ratios["all-linear+dropout: lorakit/peft"] = lk / pf
        ratios["all-linear+dropout: lorakit/lorakit without dropout"] = lk / med["lorakit/all-linear"]
    return {
        "shape": common.SHAPES[model],
        "first_step_loss": losses,
        "timings": {n: t.summary() for n, t in timings.items()},
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def step_ratios(model: str, med: dict[str, float]) -> dict[str, float]:
    """Ratios of medians for every target set; a ratio whose variants were not timed is left out."""
    out = {}
    for ts in common.TARGET_SETS[model]:
        pairs = [("lorakit", "peft"), ("lorakit", "full"), ("peft", "full")]
        pairs += [(kind, "peft") for kind in ATTRIBUTION]
        pairs += [("floor-lorakit", "peft"), ("lorakit", "floor-lorakit"), ("floor", "peft")]
        for a, b in pairs:
            na, nb = (n if n in ("full", "floor", "floor-lorakit") else f"{n}/{ts}" for n in (a, b))
            if na in med and nb in med:
                out[f"{ts}: {a}/{b}"] = med[na] / med[nb]
    return out


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe_memory(model: str, name: str) -> dict[str, float]:
    """Runs in its own process: peak RSS growth of a few training steps of one variant."""
    kind, _, target_set = name.partition("/")
    base = common.load_base(model)
    targets = common.TARGET_SETS[model][target_set] if target_set else None
    net = common.build(kind, model, base, targets)
    del base
    net.train()
    common.set_dropout(net, 0.0)
    opt = common.optimizer(net)
    batch = common.make_batch(model, net)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    resting = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    for _ in range(PROBE_STEPS):
        common.train_step(net, opt, batch, common.backend_for(name))
    peak = _rss_kib("VmHWM")
    return {"resting_mib": resting / 1024, "peak_mib": peak / 1024, "step_mib": (peak - resting) / 1024}


def memory_model(model: str, names: list[str], repeats: int = MEMORY_REPEATS) -> dict[str, dict[str, Any]]:
    """Per variant, the median of ``repeats`` fresh-process probes, run round-robin over the
    variants (peak RSS of one process varies by +-5% with where the allocator lands)."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            cmd = [sys.executable, __file__, "--probe", model, name]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    out: dict[str, dict[str, Any]] = {}
    for name, probes in runs.items():
        step = [p["step_mib"] for p in probes]
        out[name] = {
            "resting_mib": statistics.median(p["resting_mib"] for p in probes),
            "peak_mib": statistics.median(p["peak_mib"] for p in probes),
            "step_mib": statistics.median(step),
            "step_mib_runs": step,
        }
    return out


def markdown(results: dict[str, dict]) -> str:
    lines = []
    for model, res in results.items():
        b, t = res["shape"]
        lines += [
            f"### {model} (batch {b}, length {t}; load average {res['loadavg_before'][0]:.2f} at the start, "
            f"{res['loadavg_after'][0]:.2f} at the end)",
            "",
            "| variant | median s | min s | max s | vs full | CPU s (median) | step peak MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        full = res["timings"].get("full", {}).get("median_s", float("nan"))
        for name, t in res["timings"].items():
            mem = res.get("memory", {}).get(name, {}).get("step_mib", float("nan"))
            lines.append(
                f"| {name} | {t['median_s']:.3f} | {t['min_s']:.3f} | {t['max_s']:.3f} "
                f"| {t['median_s'] / full:.2f}x | {t['cpu_median_s']:.3f} | {mem:.0f} |"
            )
        lines += ["", "| ratio of medians | wall | CPU |", "|---|---:|---:|"]
        cpu = res["cpu_ratios"]
        lines += [
            f"| {k} | {v:.3f} | {cpu[k]:.3f} |" if k in cpu else f"| {k} | {v:.3f} | |"
            for k, v in res["ratios"].items()
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(common.MODELS), choices=common.MODELS)
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 12 / 6)")
    ap.add_argument("--plain", action="store_true", help="also time lorakit with the fast path off")
    ap.add_argument("--dropout", type=float, default=0.0, help="also time all-linear with this dropout")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-variant memory probes")
    ap.add_argument(
        "--memory-only",
        action="store_true",
        help="re-probe only the step memory of the variants already in --out (--kinds / --target-sets "
        "select them); their timings stay as they were",
    )
    ap.add_argument("--kinds", nargs="+", default=None, help="time only these kinds (e.g. lorakit peft)")
    ap.add_argument("--target-sets", nargs="+", default=None, help="only these target sets (e.g. all-linear)")
    ap.add_argument("--out", type=Path, default=common.RESULTS / "step_time.json")
    ap.add_argument("--probe", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(common.THREADS)
    if args.probe:
        print(json.dumps(probe_memory(*args.probe)))
        return
    if args.memory_only:
        reprobe_memory(args)
        return
    results = {}
    for model in args.models:
        repeats = args.repeats or (12 if model == "minilm-l6" else 6)
        results[model] = time_model(model, repeats, args.plain, args.dropout, args.kinds, args.target_sets)
        if not args.no_memory:
            results[model]["memory"] = memory_model(model, list(results[model]["timings"]))
        print(markdown({model: results[model]}), flush=True)
    # Models not run now keep their figures from an earlier run into the same file (each model's
    # variants are always timed together, so its ratios stay interleaved).
    earlier = json.loads(args.out.read_text()).get("results", {}) if args.out.exists() else {}
    results = {**{m: r for m, r in earlier.items() if m not in results}, **results}
    common.write_json(args.out, {"machine": common.machine(), "results": results})
    args.out.with_suffix(".md").write_text(markdown(results))


def reprobe_memory(args: argparse.Namespace) -> None:
    """Re-run the memory probes of existing variants (e.g. with more repeats) into ``args.out``."""
    data = json.loads(args.out.read_text())
    for model in args.models:
        res = data["results"][model]
        names = [
            n
            for n in res["timings"]
            if (not args.kinds or n.partition("/")[0] in args.kinds)
            and (not args.target_sets or n.partition("/")[2] in args.target_sets)
        ]
        load_before = os.getloadavg()
        res.setdefault("memory", {}).update(memory_model(model, names))
        res["memory_reprobed"] = {"variants": names, "loadavg": [load_before, os.getloadavg()]}
        print(markdown({model: res}), flush=True)
    common.write_json(args.out, data)
    args.out.with_suffix(".md").write_text(markdown(data["results"]))


if __name__ == "__main__":
    main()
