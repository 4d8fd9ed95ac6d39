"""Crash campaign: SIGKILL ``lorakit train --resume`` at random moments, then check what survives.

``python -m bench.crash_campaign --kills 20`` (or ``make crash``). A tiny BERT classifier is
trained once without interruption (the reference), then the same config is started again and
again with ``--resume``, each process killed with SIGKILL at a moment drawn from a cycle of
kinds:

- ``checkpoint``: as soon as a checkpoint's temporary folder appears, after 0-15 ms (mid-write);
- ``random``: 0-0.5 s after the process writes a new checkpoint (mid-step, -eval, -log, -write);
- ``startup``: at a random moment before the process reports its resume (imports, cleanup,
  restore).

Checked at every start: a process that reports a resume names the newest complete checkpoint;
the temporary files left by the kill are gone once it has resumed; no process starts fresh while
a checkpoint exists; every checkpoint a resumed process writes is byte-identical to the
reference's at the same step. At the end: the final adapter is byte-identical to the reference
and no temporary file is left. Only the standard library is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("checkpoint", "random", "startup")
CHECKPOINT_FILES = (
    "trainer_state.json",
    "trainable.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "rng.safetensors",
    "rng.json",
    "adapter/adapter_model.safetensors",
    "adapter/adapter_config.json",
)
COMPARED = ("trainable.safetensors", "optimizer.safetensors", "adapter/adapter_model.safetensors")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
RESUMED = re.compile(r"resumed from (\S+) \(step (\d+)\)")
TEMPORARY = re.compile(r"\.(tmp|old|del)-step-.*|\..+\.tmp")
STEP = re.compile(r"step-(\d+)")


@dataclass
class Figures:
    """A clean campaign: every count of problems is zero and final_identical is true."""

    kills: int = 0
    kills_by_kind: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    resumes: int = 0
    resumes_newest: int = 0
    fresh_starts_over_checkpoint: int = 0
    leftovers_seen: int = 0
    leftovers_cleaned: int = 0
    checkpoints_compared: int = 0
    checkpoints_identical: int = 0
    final_identical: bool = False
    leftovers_at_end: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return (
            not self.problems
            and self.final_identical
            and not self.leftovers_at_end
            and self.resumes == self.resumes_newest
            and self.checkpoints_compared == self.checkpoints_identical
            and self.leftovers_seen == self.leftovers_cleaned
        )


def complete_checkpoints(root: Path) -> dict[int, Path]:
    """Step folders holding every file of a checkpoint (judged here, not by lorakit)."""
    found: dict[int, Path] = {}
    if not root.is_dir():
        return found
    for child in root.iterdir():
        m = STEP.fullmatch(child.name)
        if m and all((child / f).is_file() for f in CHECKPOINT_FILES):
            found[int(m.group(1))] = child
    return found


def leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if TEMPORARY.fullmatch(p.name))


def _same_files(a: Path, b: Path, names: tuple[str, ...]) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


class Campaign:
    def __init__(self, config: Path, reference: Path, seed: int, env: dict[str, str]) -> None:
        self.config = config
        self.run = self._output_dir(config)
        self.reference = reference
        self.rng = random.Random(seed)
        self.env = env
        self.figures = Figures()
        self.compared: set[int] = set()
        self.logs = Path(tempfile.mkdtemp(prefix="crash-logs-"))

    @staticmethod
    def _output_dir(config: Path) -> Path:
        for line in config.read_text().splitlines():
            if line.startswith("output_dir:"):
                return Path(line.split(":", 1)[1].strip())
        raise ValueError(f"{config}: no top-level output_dir")

    def start(self) -> tuple[subprocess.Popen, Path]:
        self.figures.starts += 1
        log = self.logs / f"start-{self.figures.starts}.log"
        cmd = [sys.executable, "-m", "lorakit", "train", str(self.config), "--resume"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return proc, log

    def wait_for(self, proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> bool:
        """Poll until ``ready()``; False when the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.001)
        raise TimeoutError("the training process neither progressed nor ended")

    def kill_once(self, kind: str) -> bool:
        """One start and (unless the run finishes first) one SIGKILL. False: the run finished."""
        before = complete_checkpoints(self.run / "checkpoints")
        left = leftovers(self.run)
        proc, log = self.start()
        ckpt = self.run / "checkpoints"
        if kind == "checkpoint":
            mine = re.compile(rf"\.tmp-step-\d+-{proc.pid}")  # not a leftover of an earlier kill
            alive = self.wait_for(proc, lambda: any(mine.fullmatch(p.name) for p in _ls(ckpt)))
            time.sleep(self.rng.uniform(0, 0.015))
        elif kind == "random":
            alive = self.wait_for(proc, lambda: set(complete_checkpoints(ckpt)) - set(before) != set())
            time.sleep(self.rng.uniform(0, 0.5))
        else:
            deadline = time.monotonic() + self.rng.uniform(0.2, 6.0)
            alive = self.wait_for(proc, lambda: time.monotonic() > deadline or "resumed from" in _text(log))
        finished = not alive or proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
            self.figures.kills += 1
            self.figures.kills_by_kind[kind] = self.figures.kills_by_kind.get(kind, 0) + 1
        proc.wait()
        self.check_start(_text(log), before, left, proc.returncode)
        return not finished

    def check_start(self, text: str, before: dict[int, Path], left: list[str], code: int) -> None:
        f = self.figures
        m = RESUMED.search(text)
        if m:
            f.resumes += 1
            newest = max(before) if before else None
            if newest is not None and Path(m.group(1)).name == f"step-{newest}":
                f.resumes_newest += 1
            else:
                f.problems.append(f"start {f.starts}: resumed from {m.group(1)}, newest was step-{newest}")
            f.leftovers_seen += len(left)
            f.leftovers_cleaned += sum(not (self.run / p).exists() for p in left)
        elif "fresh run: removing" in text and before:
            f.fresh_starts_over_checkpoint += 1
            f.problems.append(f"start {f.starts}: started fresh although {max(before)} was complete")
        if code not in (0, -signal.SIGKILL):
            f.problems.append(f"start {f.starts}: exit code {code}: {text[-2000:]}")
        self.compare_checkpoints()

    def compare_checkpoints(self) -> None:
        ref = complete_checkpoints(self.reference / "checkpoints")
        for step, folder in complete_checkpoints(self.run / "checkpoints").items():
            if step in self.compared or step not in ref:
                continue
            self.compared.add(step)
            self.figures.checkpoints_compared += 1
            if _same_files(folder, ref[step], COMPARED):
                self.figures.checkpoints_identical += 1
            else:
                self.figures.problems.append(f"checkpoint step-{step} differs from the reference")

    def finish(self) -> None:
        before = complete_checkpoints(self.run / "checkpoints")
        left = leftovers(self.run)
        proc, log = self.start()
        proc.wait()
        self.check_start(_text(log), before, left, proc.returncode)
        f = self.figures
        if proc.returncode != 0:
            return
        f.final_identical = _same_files(self.run / "adapter", self.reference / "adapter", ADAPTER_FILES)
        if not f.final_identical:
            f.problems.append("the final adapter differs from the uninterrupted run's")
        f.leftovers_at_end = leftovers(self.run)


def _ls(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def run_campaign(config: Path, reference: Path, kills: int, seed: int = 0) -> Figures:
    """Kill ``lorakit train CONFIG --resume`` ``kills`` times, then let it finish; see the module doc.

    ``reference`` is the output folder of the same config trained without interruption, with
    every checkpoint kept (its checkpoints are compared with the campaign's).
    """
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    campaign = Campaign(config, reference, seed, env)
    for i in range(kills):
        if not campaign.kill_once(KINDS[i % len(KINDS)]):
            campaign.figures.problems.append(f"the run finished after {campaign.figures.kills} kills")
            break
    campaign.finish()
    campaign.figures.seconds = round(time.perf_counter() - start, 1)
    return campaign.figures


def report(f: Figures) -> str:
    return "\n".join(
        [
            f"kills: {f.kills} {f.kills_by_kind}; starts: {f.starts}",
            f"resumes from the newest complete checkpoint: {f.resumes_newest}/{f.resumes}",
            f"fresh starts over an existing checkpoint: {f.fresh_starts_over_checkpoint}",
            f"leftover temporary files/folders cleaned on resume: {f.leftovers_cleaned}/{f.leftovers_seen}",
            f"checkpoints byte-identical to the uninterrupted run: "
            f"{f.checkpoints_identical}/{f.checkpoints_compared}",
            f"final adapter byte-identical: {f.final_identical}; "
            f"leftovers at the end: {len(f.leftovers_at_end)}",
            f"problems: {len(f.problems)}" + "".join(f"\n  {p}" for p in f.problems[:10]),
            f"time: {f.seconds} s",
        ]
    )


def build_runs(work: Path, max_steps: int) -> tuple[Path, Path]:
    """Tiny model, data and two configs (reference keeps every checkpoint); returns (config, ref dir)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import yaml

    from tiny_assets import make_model, write_run

    model = make_model(work / "bert", "bert")
    common = {"max_steps": max_steps, "save_every": 5, "eval_every": 20, "lr": 1e-2}
    ref_cfg = write_run(work / "ref", "classification", model, keep_checkpoints=10_000, **common)
    cfg = write_run(work / "crash", "classification", model, keep_checkpoints=2, **common)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "lorakit", "train", str(ref_cfg)], env=env, check=True, cwd=ROOT)
    return cfg, Path(yaml.safe_load(ref_cfg.read_text())["output_dir"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL lorakit train at random moments and resume.")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crash-campaign-") as tmp:
        config, reference = build_runs(Path(tmp), args.max_steps)
        figures = run_campaign(config, reference, args.kills, args.seed)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps({**asdict(figures), "clean": figures.clean}, indent=2) + "\n")
    return 0 if figures.clean and figures.kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
