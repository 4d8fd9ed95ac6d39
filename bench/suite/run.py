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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes().find(b"bench.suite.job") >= 0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tuned_full_lr(out: Path, task: plan.Task, log) -> float:
    """Full fine-tuning's rate: the best of FULL_LR_GRID on 5% of the task's training file."""
    scores = {}
    for lr in plan.FULL_LR_GRID:
        name = f"tune-full-lr{lr:g}"
        cfg = plan.tuning_config(task, lr, out / task.key / name / "run")
        res = run_job(out, task, name, "full", cfg, log, wait=True)
        scores[lr] = res["summary"]["final_metrics"][task.metric]
    best = max(scores, key=lambda k: scores[k])
    (out / task.key / "full_lr.json").write_text(json.dumps({"scores": scores, "best": best}) + "\n")
    return best


def full_rate(out: Path, task: plan.Task, tuned: dict[str, float], budget: str, log) -> float:
    """Full fine-tuning's learning rate: fixed, tuned on this task, or another task's tuned one."""
    if isinstance(task.full_lr, float):
        return task.full_lr
    source = task if task.full_lr is None else next(t for t in plan.tasks(budget) if t.key == task.full_lr)
    if source.key not in tuned:
        tuned[source.key] = tuned_full_lr(out, source, log)
    return tuned[source.key]


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
        tuned: dict[str, float] = {}
        for task in tasks:
            if task.base_eval and not args.no_base:
                cfg = plan.job_config(task, "base", 0, task.lora_lr, out / task.key / "base" / "run")
                run_job(out, task, "base", "base", cfg, log)
            for method in task.methods:
                if args.methods and method not in args.methods.split(","):
                    continue
                lr = task.lora_lr
                if method == "full":
                    lr = full_rate(out, task, tuned, args.budget, log)
                for seed in task.seeds:
                    if args.seeds and str(seed) not in args.seeds.split(","):
                        continue
                    name = f"{method}-s{seed}"
                    cfg = plan.job_config(task, method, seed, lr, out / task.key / name / "run")
                    run_job(out, task, name, method, cfg, log)
        print(f"all jobs done in {time.perf_counter() - t0:.0f} s (load {load()})", file=log)
    report.write_report(out, tasks, args.budget)


if __name__ == "__main__":
    main()
