"""Issue 12 item 3: an interrupted run leaves adapters every command accepts, and says how to go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli import main
from lorakit.training import loop
from tiny_assets import make_model, write_run


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("interrupt") / "bert", "bert")


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Ctrl-C arrives during optimizer step ``step`` (1-based)."""
    real = loop.train_step

    def step_or_interrupt(run: loop.Run, batches: list, reporter: loop.Reporter) -> float:
        if run.state.step + 1 == step:
            raise KeyboardInterrupt
        return real(run, batches, reporter)

    monkeypatch.setattr(loop, "train_step", step_or_interrupt)


def test_interrupted_run_is_usable_and_says_how_to_finish(
    tmp_path: Path, bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", bert, max_steps=8, eval_every=2, save_every=4)
    run = tmp_path / "run"
    interrupt_at(monkeypatch, 7)
    assert main(["train", str(cfg), "train.lr=0.02"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "interrupted at step 6 of 8" in err
    assert f"lorakit train {cfg} train.lr=0.02 --resume" in err  # the same command line
    assert "train.max_steps=N resume_allow_changes=[train.max_steps]" in err
    assert (
        f"--adapter {run / 'best_adapter'}" in err and str(run / "checkpoints" / "step-4" / "adapter") in err
    )
    assert not (run / "adapter").exists()
    monkeypatch.undo()

    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"text": "the film was very good"}\n')
    for adapter in (run / "best_adapter", run / "checkpoints" / "step-4" / "adapter"):
        assert main(["eval", str(cfg), "--adapter", str(adapter)]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["examples"] == 16
        assert main(["predict", "--adapter", str(adapter), "--input", str(inputs)]) == 0
        assert json.loads(capsys.readouterr().out)["label"] in ("pos", "neg")
    assert main(["merge", "--adapter", str(run / "best_adapter"), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "config.json").is_file()

    assert main(["train", str(cfg), "train.lr=0.02", "--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_step"] == 8
    assert summary["resumed_from"].endswith("step-4")


def test_interrupt_before_the_first_checkpoint_says_to_start_again(
    tmp_path: Path, bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", bert, max_steps=8, eval_every=None, save_every=4)
    interrupt_at(monkeypatch, 2)
    assert main(["train", str(cfg)]) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 1 of 8" in err and "no checkpoint yet" in err and "--overwrite" in err
    assert "Traceback" not in err


def test_best_and_checkpoint_adapters_carry_what_adapter_carries(
    tmp_path: Path, bert: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", bert, max_steps=4, eval_every=2, save_every=2)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    final = {p.name for p in (run / "adapter").iterdir()}
    assert {"lorakit_task.json", "tokenizer.json", "adapter_model.safetensors"} <= final
    for folder in (run / "best_adapter", run / "checkpoints" / "step-2" / "adapter"):
        assert {p.name for p in folder.iterdir()} == final, folder
        task = json.loads((folder / "lorakit_task.json").read_text())
        assert task == json.loads((run / "adapter" / "lorakit_task.json").read_text())
