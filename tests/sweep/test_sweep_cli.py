"""``lorakit sweep`` end to end on a tiny BERT classifier (real ``lorakit train`` trials)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lorakit.cli import main
from lorakit.runconfig.yaml_io import load_config
from lorakit.sweep.state import STATE_FILE

SRC = str(Path(__file__).resolve().parents[2] / "src")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "lorakit", "sweep", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_grid_sweep_report_failure_and_resume(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = [str(tiny_config), "train.save_every=null", "--grid", "lora.r=2,4", "--grid", "train.lr=1e-2,1e30"]
    args += ["--parallel", "2", "--out", str(out)]
    res = sweep(*args)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Traceback" not in res.stderr

    # The table: one row per trial, the divergent learning rate recorded as failed with its reason.
    table = res.stdout[res.stdout.index("trial  lora.r") :]
    rows = [ln.split() for ln in table.splitlines()[2:6]]
    assert [r[0].lstrip("*") for r in rows] == ["1", "2", "3", "4"], table
    assert "2 completed, 2 failed, 0 pruned" in table
    data = json.loads((out / "sweep.json").read_text())
    by_lr = {t["params"]["train.lr"]: t for t in data["trials"] if t["params"]["lora.r"] == 4}
    assert by_lr[1e30]["status"] == "failed" and "nan" in by_lr[1e30]["reason"].lower()
    ok = by_lr[1e-2]
    assert ok["status"] == "completed" and 0 <= ok["best_metric"] <= 1
    summary = json.loads((out / ok["dir"] / "summary.json").read_text())
    assert ok["trainable_params"] == summary["trainable_params"] > 0
    assert ok["best_metric"] == summary["best_metric"]
    r2 = next(t for t in data["trials"] if t["params"] == {"lora.r": 2, "train.lr": 0.01})
    assert r2["trainable_params"] < ok["trainable_params"]
    with (out / "sweep.csv").open() as f:
        assert [r["trial"] for r in csv.DictReader(f)] == ["1", "2", "3", "4"]

    # best_config.yaml is a valid run config with the winning values.
    best = next(t for t in data["trials"] if t["trial"] == data["best_trial"])
    cfg = load_config(out / "best_config.yaml")
    assert cfg.lora.r == best["params"]["lora.r"] and cfg.train.lr == best["params"]["train.lr"]
    assert cfg.output_dir == yaml.safe_load(tiny_config.read_text())["output_dir"]
    for name in ("metric_vs_rank.png", "metric_vs_trainable.png", "learning_curves.png"):
        assert (out / "plots" / name).read_bytes()[:8] == PNG_MAGIC

    # Interrupted trial: the state says it was running and its files are half there.
    state = json.loads((out / STATE_FILE).read_text())
    victim = state["trials"][2]
    victim["status"] = "running"
    (out / victim["dir"] / "summary.json").unlink()
    (out / STATE_FILE).write_text(json.dumps(state))
    res = sweep(*args)
    assert res.returncode == 0, res.stderr + res.stdout
    starts = [ln for ln in res.stdout.splitlines() if "] start" in ln]
    assert starts == ["[trial 3/4] start  lora.r=4 train.lr=0.01 (attempt 2)"]
    assert "resuming: 3 finished trial(s) skipped" in res.stdout
    again = json.loads((out / "sweep.json").read_text())["trials"][2]
    assert again["status"] == "completed" and again["dir"].endswith("-attempt2")
    assert again["best_metric"] == ok["best_metric"]  # same seed, same data: same result


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("lora.r=4,,8", "--grid 'lora.r=4,,8': value 2 is empty"),
        ("lora.r", "--grid 'lora.r': expected KEY=VALUES"),
        ("lora.rank=4,8", "--grid lora.rank: value 4 is not valid"),
        ("lora.r=0,4", "--grid lora.r: value 0 is not valid"),
        ("train.lr=1e-4..1e-2", "train.lr is a range"),
    ],
)
def test_bad_grid_exits_2_with_a_clear_message(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: str, message: str
) -> None:
    code = main(["sweep", str(tiny_config), "--grid", grid, "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_sigterm_stops_the_sweep_like_ctrl_c() -> None:
    from lorakit.sweep.command import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before
