"""Run every job of `make results` that has no result yet, then write the report.

    python -m bench.suite.run                    # the real budgets -> RESULTS.md
    python -m bench.suite.run --budget tiny      # a few steps each: checks the whole pipeline

Resumable: each job writes <out>/<task>/<job>/result.json when it ends and is skipped next time;
an interrupted lorakit job continues from its newest checkpoint (resume: auto).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.suite import plan, report


def run_job(out: Path, task: plan.Task, name: str, method: str, config: dict, log, wait: bool = False):
    """Run one job unless it has a result; None when another runner is running it (``wait``:
    wait for that result instead)."""
    folder = out / task.key / name
    result = folder / "result.json"
    pid_file = folder / "job.pid"
    while not result.is_file() and pid_file.is_file() and _alive(int(pid_file.read_text())):
        if not wait:
            print(f"{task.key}/{name}: running in another runner, skipped", file=log, flush=True)
            return None
        time.sleep(20)
    if result.is_file() and _config_changed(folder, config):
        kept = folder.with_name(f"superseded-{name}-{time.strftime('%Y%m%d%H%M%S')}")
        folder.rename(kept)
        print(
            f"{task.key}/{name}: its config changed (e.g. a newly tuned lr); old result kept in {kept.name}",
            file=log,
            flush=True,
        )
    if result.is_file():
        return json.loads(result.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"task": task.key, "job": name, "method": method, "config": config, "result": str(result)}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    print(f"[{time.strftime('%H:%M:%S')}] {task.key}/{name} (load {load()})", file=log, flush=True)
    with open(folder / "log.txt", "a") as f:
        cmd = [sys.executable, "-m", "bench.suite.job", str(spec_path)]
        proc = subprocess.Popen(cmd, stdout=f, stderr=f, cwd=plan.ROOT)
        pid_file.write_text(str(proc.pid))
        code = proc.wait()
    if code != 0 or not result.is_file():
        raise SystemExit(f"{task.key}/{name} failed (exit {code}); see {folder / 'log.txt'}")
    return json.loads(result.read_text())


def _config_changed(folder: Path, config: dict) -> bool:
    """Whether the finished job in ``folder`` ran another config (its output folder aside)."""
    spec = folder / "spec.json"
    if not spec.is_file():
        return False
    old = dict(json.loads(spec.read_text())["config"])
    return {**old, "output_dir": None} != {**config, "output_dir": None}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes().find(b"bench.suite.job") >= 0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rate_file(out: Path, task: plan.Task, method: str) -> Path:
    return out / task.key / ("full_lr.json" if method == "full" else f"lr_{method}.json")


def tuned_rate(out: Path, task: plan.Task, method: str, grid: tuple[float, ...], log) -> float:
    """The best rate of ``grid`` for ``method`` on 5% of the task's training file."""
    scores = {}
    for lr in grid:
        name = f"tune-{method}-lr{lr:g}"
        cfg = plan.tuning_config(task, lr, out / task.key / name / "run", method)
        res = run_job(out, task, name, method, cfg, log, wait=True)
        scores[lr] = res["summary"]["final_metrics"][task.metric]
    best = max(scores, key=lambda k: scores[k])
    rate_file(out, task, method).write_text(json.dumps({"scores": scores, "best": best}) + "\n")
    return best


def method_rate(out: Path, task: plan.Task, method: str, tuned: dict, budget: str, log) -> float:
    """A method's learning rate: tuned on this task (``lr_grids``), full fine-tuning's fixed or
    reused rate, or the task's LoRA rate."""
    key = "lorakit-qv" if method == "peft-qv" else method
    if key in task.lr_grids:
        if (task.key, key) not in tuned:
            tuned[task.key, key] = tuned_rate(out, task, key, task.lr_grids[key], log)
        return tuned[task.key, key]
    if method != "full":
        return task.lora_lr
    if isinstance(task.full_lr, float):
        return task.full_lr
    source = task if task.full_lr is None else next(t for t in plan.tasks(budget) if t.key == task.full_lr)
    if (source.key, "full") not in tuned:
        tuned[source.key, "full"] = tuned_rate(out, source, "full", plan.FULL_LR_GRID, log)
    return tuned[source.key, "full"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", choices=["full", "tiny"], default="full")
    ap.add_argument("--tasks", default="sst2,conll2003,e2e,multi30k,e2e-target,multi30k-gemma")
    ap.add_argument("--out", type=Path, default=None, help="default: build/results-<budget>")
    ap.add_argument(
        "--methods", default=None, help="only these methods (comma-separated), e.g. to split a task"
    )
    ap.add_argument("--seeds", default=None, help="only these seeds (comma-separated)")
    ap.add_argument("--no-base", action="store_true", help="skip the base-model evaluations")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = args.out or plan.ROOT / "build" / f"results-{args.budget}"
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.tasks.split(",")
    tasks = [t for t in plan.tasks(args.budget) if t.key in wanted]
    log = sys.stderr
    t0 = time.perf_counter()
    if not args.report_only:
        tuned: dict[tuple[str, str], float] = {}
        for task in tasks:
            if task.base_eval and not args.no_base:
                cfg = plan.job_config(task, "base", 0, task.lora_lr, out / task.key / "base" / "run")
                run_job(out, task, "base", "base", cfg, log)
            for method in task.methods:
                if args.methods and method not in args.methods.split(","):
                    continue
                lr = method_rate(out, task, method, tuned, args.budget, log)
                for seed in task.method_seeds.get(method, task.seeds):
                    if args.seeds and str(seed) not in args.seeds.split(","):
                        continue
                    name = f"{method}-s{seed}"
                    cfg = plan.job_config(task, method, seed, lr, out / task.key / name / "run")
                    run_job(out, task, name, method, cfg, log)
        print(f"all jobs done in {time.perf_counter() - t0:.0f} s (load {load()})", file=log)
    report.write_report(out, plan.tasks(args.budget), args.budget)  # every task, not only --tasks


if __name__ == "__main__":
    main()
