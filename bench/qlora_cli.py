"""`lorakit train` on SmolLM2-135M through the CLI, float32 base vs `quantize: nf4`, back to back.

Runs are interleaved (f32, nf4, f32, nf4, ...) because the machine is shared and noisy; the load
average is recorded before every run. Per run:
- peak_memory_mb: summary.json's figure (ru_maxrss of the training process; it includes loading
  the float32 model, which happens before quantization in both modes);
- train_peak_rss_mb: highest RSS of the process sampled every 20 ms from the moment the training
  loop starts (metrics.jsonl appears), i.e. quantized base + LoRA + activations + optimizer;
- median_step_s: median optimizer-step wall time from metrics.jsonl (log_every=1: batch /
  samples_per_s), first step excluded.

Data: the first rows of ../shared/data/e2e/train.csv (prompt = mr, response = ref).
Usage: python bench/qlora_cli.py [--steps 12] [--repeats 2] [--batch 2] [--length 96] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT.parent / "shared" / "data" / "e2e" / "train.csv"


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def overrides(args: argparse.Namespace, out: Path, quantize: str | None) -> list[str]:
    return [
        f"data.train={E2E}",
        "data.prompt_field=mr",
        "data.response_field=ref",
        f"data.max_length={args.length}",
        f"data.max_train_samples={args.steps * args.batch * 2}",
        "lora.r=8",
        "lora.alpha=16",
        "lora.dropout=0.05",
        "lora.targets=[q_proj,k_proj,v_proj,o_proj]",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch}",
        "train.lr=1e-3",
        "train.eval_every=null",
        "train.save_every=null",
        "train.log_every=1",
        f"train.num_threads={args.threads}",
        f"quantize={quantize or 'null'}",
        f"output_dir={out}",
    ]


def run_once(args: argparse.Namespace, out: Path, quantize: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    base = out.parent / "base.yaml"
    base.write_text("model: smollm2-135m\ntask: causal_lm\n")
    cmd = [sys.executable, "-m", "lorakit", "train", str(base), *overrides(args, out, quantize)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    train_peak = 0.0
    while proc.poll() is None:
        if (out / "metrics.jsonl").exists():
            train_peak = max(train_peak, rss_mb(proc.pid))
        time.sleep(0.02)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{err[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [args.batch / r["samples_per_s"] for r in rows if r["split"] == "train"][1:]
    return {
        "mode": quantize or "float32",
        "load_avg_1m": round(load, 2),
        "peak_memory_mb": summary["peak_memory_mb"],
        "train_peak_rss_mb": round(train_peak, 1),
        "median_step_s": round(statistics.median(steps), 3),
        "quantized_weight_mb": summary.get("quantized_weight_mb"),
        "final_loss": round([r for r in rows if r["split"] == "train"][-1]["loss"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--length", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not E2E.is_file():
        raise SystemExit(f"{E2E} not found: this benchmark needs the E2E data")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for mode in (None, "nf4"):
                r = run_once(args, Path(tmp) / f"{mode or 'f32'}-{i}", mode)
                print(json.dumps(r), flush=True)
                results.append(r)
    for mode in ("float32", "nf4"):
        mine = [r for r in results if r["mode"] == mode]
        print(
            f"{mode}: median step {statistics.median(r['median_step_s'] for r in mine):.3f} s, "
            f"train peak RSS {max(r['train_peak_rss_mb'] for r in mine):.0f} MB, "
            f"summary peak_memory_mb {max(r['peak_memory_mb'] for r in mine):.0f} MB"
        )


if __name__ == "__main__":
    main()
