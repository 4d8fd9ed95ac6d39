"""Issue 12 item 5: a finished run is never overwritten without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli import main
from lorakit.errors import RunExistsError
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.loop import train
from tiny_assets import make_model, write_run


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("overwrite") / "bert", "bert")


@pytest.fixture
def finished(tmp_path: Path, bert: Path) -> Path:
    cfg = write_run(tmp_path, "classification", bert, max_steps=4, eval_every=2, save_every=2)
    assert main(["train", str(cfg)]) == 0
    (tmp_path / "run" / "merged").mkdir()  # what `lorakit merge --out run/merged` leaves
    (tmp_path / "run" / "merged" / "config.json").write_text("{}")
    return cfg


def test_rerun_into_a_finished_run_is_refused(finished: Path, capsys: pytest.CaptureFixture) -> None:
    run = finished.parent / "run"
    before = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    metrics = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", str(finished), "train.max_steps=2"]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a run (status completed at step 4" in err
    assert "--resume" in err and "--output-dir DIR" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == before
    assert (run / "metrics.jsonl").read_text() == metrics and (run / "merged").is_dir()


def test_the_library_refuses_too(finished: Path) -> None:
    with pytest.raises(RunExistsError, match="already holds a run"):
        train(load_config(finished, ["train.max_steps=2"]))


def test_overwrite_replaces_every_output_of_the_old_run(
    finished: Path, capsys: pytest.CaptureFixture
) -> None:
    run = finished.parent / "run"
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    capsys.readouterr()
    assert main(["train", str(finished), "--overwrite", "train.max_steps=2", "train.save_every=1"]) == 0
    err = capsys.readouterr().err
    assert "--overwrite: removed adapter, best_adapter, checkpoints, merged, tensorboard" in err
    assert not (run / "merged").exists()
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-1", "step-2"]
    assert json.loads((run / "summary.json").read_text())["final_step"] == 2


def test_overwrite_and_resume_together_are_refused(finished: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["train", str(finished), "--overwrite", "--resume"]) == 2
    assert "give one" in capsys.readouterr().err


def test_resume_of_a_finished_run_without_checkpoints_is_refused(
    tmp_path: Path, bert: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", bert, max_steps=2, eval_every=None, save_every=None)
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--overwrite" in err and "--output-dir" in err


def test_a_new_output_dir_trains_beside_the_old_run(finished: Path, capsys: pytest.CaptureFixture) -> None:
    other = finished.parent / "second"
    assert main(["train", str(finished), "--output-dir", str(other), "train.max_steps=2"]) == 0
    assert (other / "adapter").is_dir() and (finished.parent / "run" / "adapter").is_dir()
