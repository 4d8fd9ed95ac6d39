"""Crash safety of training (issue 7, item 2). The 20-kill campaign is ``make crash``.

A few SIGKILLs at random moments (mid checkpoint write, mid step, during start-up), then the
same invariants as the full campaign: resumes take the newest complete checkpoint, leftovers
are cleaned, every checkpoint and the final adapter are byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import yaml
from bench.crash_campaign import report, run_campaign

from lorakit.cli import main
from lorakit.training import checkpoint as ckpt_module
from lorakit.training.checkpoint import list_checkpoints
from tiny_assets import write_run

COMMON = {"max_steps": 60, "save_every": 5, "eval_every": 20, "lr": 1e-2}


def _output(cfg: Path) -> Path:
    return Path(yaml.safe_load(cfg.read_text())["output_dir"])


def _reference(tmp_path: Path, tiny_dirs: dict[str, Path], **train: object) -> Path:
    cfg = write_run(tmp_path / "ref", "classification", tiny_dirs["bert"], **{**COMMON, **train})
    assert main(["train", str(cfg)]) == 0
    return _output(cfg)


def _adapter(run: Path) -> dict[str, bytes]:
    return {
        n: (run / "adapter" / n).read_bytes() for n in ("adapter_model.safetensors", "adapter_config.json")
    }


def test_random_sigkills_resume_byte_identical(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    reference = _reference(tmp_path, tiny_dirs, keep_checkpoints=1000)
    cfg = write_run(tmp_path / "crash", "classification", tiny_dirs["bert"], **COMMON, keep_checkpoints=2)
    figures = run_campaign(cfg, reference, kills=3, seed=1)
    print(report(figures))
    assert figures.kills == 3, report(figures)
    assert figures.problems == [], report(figures)
    assert figures.resumes >= 1 and figures.resumes_newest == figures.resumes
    assert figures.checkpoints_compared >= 2 and figures.checkpoints_identical == figures.checkpoints_compared
    assert figures.leftovers_cleaned == figures.leftovers_seen
    assert figures.final_identical and figures.leftovers_at_end == []
    assert figures.clean


def _plant_leftovers(run: Path) -> None:
    """What kills at unlucky moments leave behind (names as the writers make them)."""
    ckpts = run / "checkpoints"
    newest = list_checkpoints(ckpts)[-1]
    step = int(newest.name.split("-")[1])
    # Killed between "step-N -> .old-step-N" and ".tmp-step-N -> step-N": .old is the checkpoint.
    shutil.copytree(newest, ckpts / f".old-step-{step}-4242")
    shutil.copytree(newest, ckpts / f".tmp-step-{step}-4242")
    shutil.rmtree(newest)
    shutil.copytree(ckpts / f".old-step-{step}-4242", ckpts / ".del-step-1-4242")  # killed mid-prune
    (ckpts / f"step-{step + 5}").mkdir()  # half-deleted by an older version: no trainer_state.json
    (run / ".summary.json.ab12cd.tmp").write_text("{")
    (run / ".adapter.tmp").mkdir()
    (run / "best_adapter" / ".adapter_model.safetensors.x1y2.tmp").write_bytes(b"\0" * 10)


def test_resume_recovers_every_kind_of_leftover(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path / "crash", "classification", tiny_dirs["bert"], **COMMON)
    run = _output(cfg)
    assert main(["train", str(cfg)]) == 0
    finished = _adapter(run)
    shutil.rmtree(run / "adapter")  # as if killed while writing the final adapter
    _plant_leftovers(run)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "leftover(s) of an interrupted run" in err, err
    assert json.loads((run / "summary.json").read_text())["resumed_from"].endswith("step-60")
    names = {p.name for p in run.rglob("*")}
    temporary = {n for n in names if n.startswith((".tmp-", ".old-", ".del-")) or n.endswith(".tmp")}
    assert temporary == set()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-55", "step-60"]
    assert _adapter(run) == finished


def test_disk_full_during_checkpoint_keeps_previous(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    short = {"max_steps": 20, "eval_every": None}
    reference = _reference(tmp_path, tiny_dirs, **short)
    cfg = write_run(tmp_path / "full", "classification", tiny_dirs["bert"], **{**COMMON, **short})
    run = _output(cfg)
    real_save = ckpt_module.save_file
    calls = {"n": 0}

    def save_file_until_full(tensors: dict, path: str) -> None:
        calls["n"] += 1
        if calls["n"] > 3:  # step-5 (3 files) fits, step-10 does not
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(tensors, path)

    monkeypatch.setattr(ckpt_module, "save_file", save_file_until_full)
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot write checkpoint step-10" in err and "No space left on device" in err, err
    assert "step-5" in err, err
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-5"], "temporary folder left behind"
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"

    monkeypatch.setattr(ckpt_module, "save_file", real_save)  # space freed: resume from step-5
    assert main(["train", str(cfg), "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["resumed_from"].endswith("step-5")
    assert _adapter(run) == _adapter(reference)
