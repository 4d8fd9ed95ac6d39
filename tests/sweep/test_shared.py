"""Sweeps in shared Optuna storage: several workers, one study, each trial run once."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from lorakit.cli import build_parser, main
from lorakit.errors import ConfigError
from lorakit.sweep import PrunerSettings, SweepOptions, parse_space, run_sweep
from lorakit.sweep.command import options_from_args, run_options
from lorakit.sweep.shared_ledger import HEARTBEAT, WORKER
from lorakit.sweep.state import STATE_FILE, SweepState, SweepStateError
from lorakit.sweep.storage import masked, open_storage

HERE = Path(__file__).parent
SRC = str(HERE.parents[1] / "src")
FAKE = (sys.executable, str(HERE / "fake_trainer.py"))
WORKER_SCRIPT = str(HERE / "sweep_worker.py")
GRID = ["--grid", "lora.r=2,8", "--grid", "train.lr=1e-3,2e-3"]


def start_workers(n: int, tmp_path: Path, args: list[str], step_s: float) -> list[subprocess.Popen[str]]:
    """``n`` sweep worker processes, released at the same moment once all are ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(HERE)]), "FAKE_STEP_S": str(step_s)}
    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(n)]
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER_SCRIPT, str(go), str(r), "auto", "--", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "workers not ready"
        time.sleep(0.05)
    go.touch()
    return workers


def started_trials(stdout: str) -> list[int]:
    return [int(ln.split("/")[0].removeprefix("[trial ")) for ln in stdout.splitlines() if "] start" in ln]


def test_two_workers_complete_one_grid_together_each_trial_once(tiny_config: Path, tmp_path: Path) -> None:
    out, journal = tmp_path / "sweep", tmp_path / "study.journal"
    args = [str(tiny_config), *GRID, "--storage", str(journal), "--out", str(out)]
    workers = start_workers(2, tmp_path, args, step_s=0.1)
    results = [w.communicate(timeout=300) for w in workers]
    for w, (stdout, stderr) in zip(workers, results, strict=True):
        assert w.returncode == 0, stdout + stderr
    shares = [started_trials(stdout) for stdout, _ in results]
    assert sorted(shares[0] + shares[1]) == [1, 2, 3, 4], shares  # every trial once, by one worker
    assert shares[0] and shares[1], shares  # both took part

    # Each trial directory holds exactly one run of the trainer.
    dirs = sorted(p.name for p in (out / "trials").iterdir())
    assert dirs == ["trial-001", "trial-002", "trial-003", "trial-004"]
    for d in dirs:
        log = (out / "trials" / d / "train.log").read_text()
        assert log.count("$ ") == 1, log
    # One report, written by the worker that ended the last trial.
    assert sorted(p.name for p in out.glob("*.csv")) == ["sweep.csv"]
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["status"]) for r in rows] == [(str(i), "completed") for i in (1, 2, 3, 4)]
    assert {(r["lora.r"], r["train.lr"]) for r in rows} == {
        ("2", "0.001"),
        ("2", "0.002"),
        ("8", "0.001"),
        ("8", "0.002"),
    }
    assert sum("wrote " in stdout for stdout, _ in results) >= 1
    hosts = {t["host"] for t in json.loads((out / "sweep.json").read_text())["trials"]}
    assert hosts == {socket.gethostname()}
    # The folder's state file only points at the study; the trials live there.
    state = SweepState.load(out / STATE_FILE)
    assert (state.storage, state.study, state.trials) == (str(journal), "sweep", [])

    # Any machine can build the report from the storage; it is the same report.
    before = (out / "sweep.csv").read_text()
    (out / "sweep.csv").unlink()
    assert main(["sweep", *args, "--report"]) == 0
    assert (out / "sweep.csv").read_text() == before


def fake_options(tmp_path: Path, storage: str | None, **kw: object) -> SweepOptions:
    config = tmp_path / "base.yaml"
    if not config.exists():
        config.write_text("model: fake\ntask: classification\n")
    return SweepOptions(
        config=config,
        space=parse_space(kw.pop("grid", ["lora.r=2,4,8"])),  # type: ignore[arg-type]
        out_dir=tmp_path / "sweep",
        metric="accuracy",
        direction="maximize",
        train_command=FAKE,
        poll_s=0.02,
        pruner=PrunerSettings(enabled=False),
        storage=storage,
        **kw,  # type: ignore[arg-type]
    )


def test_sqlite_storage_resumes_after_ctrl_c_in_a_fresh_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    opts = fake_options(tmp_path, url, overrides=("fake.step_s=0.02",))

    def interrupt_on_second(line: str) -> None:
        if line.startswith("[trial 2/3] start"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(opts, echo=interrupt_on_second)
    lines: list[str] = []
    state = run_sweep(opts, echo=lines.append)
    # The queue keeps its order: the interrupted trial went back to its end.
    assert [ln.split("  ")[1] for ln in lines if "] start" in ln] == ["lora.r=8", "lora.r=4 (attempt 2)"]
    assert "resuming: 1 finished trial(s) skipped" in lines
    assert [(t.number, t.status, t.attempt) for t in state.trials] == [
        (1, "completed", 1),
        (2, "completed", 2),
        (3, "completed", 1),
    ]
    assert state.trials[1].previous_dirs == ["trials/trial-002"]
    assert state.trials[1].dir == "trials/trial-002-attempt2"
    lines.clear()
    run_sweep(opts, echo=lines.append)
    assert not [ln for ln in lines if "] start" in ln]


def take_as_foreign_worker(journal: str, number: int, r: int, heartbeat: float) -> None:
    """Trial ``number`` (lora.r=r of the grid 2,4) popped by a worker on another machine."""
    study = optuna.load_study(study_name="sweep", storage=open_storage(journal))
    study.enqueue_trial(
        {"lora.r": json.dumps(r)}, user_attrs={"lorakit.number": number, "lorakit.attempt": 1}
    )
    trial = study.ask(fixed_distributions={"lora.r": CategoricalDistribution(["2", "4"])})
    trial.set_user_attr(WORKER, {"id": "elsewhere:1:x", "machine": "other-machine", "pid": 1})
    trial.set_user_attr(HEARTBEAT, heartbeat)


@pytest.mark.parametrize("silent_s", [600, 5])
def test_a_silent_worker_on_another_machine_loses_its_trial_after_the_grace_period(
    tmp_path: Path, silent_s: int
) -> None:
    journal = str(tmp_path / "s.journal")
    opts = fake_options(tmp_path, journal, grid=["lora.r=2,4"], stale_after_s=60.0)
    run_sweep(replace(opts, trials=1), echo=lambda s: None)  # trial 1 completes
    take_as_foreign_worker(journal, 2, 4, time.time() - silent_s)
    lines: list[str] = []
    state = run_sweep(opts, echo=lines.append)
    if silent_s < 60:  # within the grace period: left to its worker
        assert not [ln for ln in lines if "will run again" in ln or "] start" in ln]
        assert [(t.number, t.status) for t in state.trials] == [(1, "completed"), (2, "running")]
        return
    assert "[trial 2/2] will run again: its worker elsewhere:1:x sent no heartbeat for 600s" in lines
    assert [(t.number, t.status, t.attempt) for t in state.trials] == [
        (1, "completed", 1),
        (2, "completed", 2),
    ]
    assert state.trials[1].previous_dirs == ["trials/trial-002"]


def test_duplicate_queue_entries_run_once(tmp_path: Path) -> None:
    journal = str(tmp_path / "s.journal")
    opts = fake_options(tmp_path, journal, grid=["lora.r=2,4"])
    # Two workers that queued the grid at the same moment: every slot is in the queue twice.
    study = optuna.create_study(study_name="sweep", storage=open_storage(journal), direction="maximize")
    for _ in range(2):
        for n, r in ((1, 2), (2, 4)):
            study.enqueue_trial(
                {"lora.r": json.dumps(r)}, user_attrs={"lorakit.number": n, "lorakit.attempt": 1}
            )
    lines: list[str] = []
    state = run_sweep(opts, echo=lines.append)
    assert [ln.split("]")[0] for ln in lines if "] start" in ln] == ["[trial 1/2", "[trial 2/2"]
    assert [(t.number, t.params, t.status) for t in state.trials] == [
        (1, {"lora.r": 2}, "completed"),
        (2, {"lora.r": 4}, "completed"),
    ]
    assert all(t.state.is_finished() for t in study.get_trials())


def test_folder_and_storage_must_agree(tmp_path: Path) -> None:
    journal = str(tmp_path / "s.journal")
    run_sweep(fake_options(tmp_path, None, grid=["lora.r=2"]), echo=lambda s: None)
    with pytest.raises(
        SweepStateError, match=r"kept in sweep_state.json \(1 trial\(s\)\).*without --storage"
    ):
        run_sweep(fake_options(tmp_path, journal, grid=["lora.r=2"]), echo=lambda s: None)

    shared = tmp_path / "shared"
    shared.mkdir()
    run_sweep(fake_options(shared, journal, grid=["lora.r=2"]), echo=lambda s: None)
    with pytest.raises(SweepStateError, match=rf"belongs to the shared study 'sweep' in {journal}: pass"):
        run_sweep(fake_options(shared, None, grid=["lora.r=2"]), echo=lambda s: None)
    with pytest.raises(SweepStateError, match="not to study 'other'"):
        run_sweep(fake_options(shared, journal, grid=["lora.r=2"], study_name="other"), echo=lambda s: None)
    # Another worker with other settings on the same study.
    (shared / "sweep" / STATE_FILE).unlink()
    with pytest.raises(SweepStateError, match=r"is a different sweep \(budget_steps: study has None, now 5"):
        run_sweep(fake_options(shared, journal, grid=["lora.r=2"], budget_steps=5), echo=lambda s: None)
    # The state file names a study the storage no longer has.
    run_sweep(fake_options(shared, journal, grid=["lora.r=2"]), echo=lambda s: None)
    Path(journal).unlink()
    with pytest.raises(SweepStateError, match=r"has no study 'sweep', yet .*sweep_state.json names it"):
        run_sweep(fake_options(shared, journal, grid=["lora.r=2"]), echo=lambda s: None)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("runs/sweep.db", "is not understood: expected a path ending in .journal"),
        ("/no/such/folder/x.journal", "folder /no/such/folder does not exist"),
        ("postgresql://me:secret@127.0.0.1:1/db", "postgresql://me:***@127.0.0.1:1/db"),
    ],
)
def test_bad_storage_is_a_clear_config_error(where: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("*", r"\*")) as caught:
        open_storage(where)
    assert "secret" not in str(caught.value)


def test_passwords_never_reach_files_or_messages() -> None:
    assert masked("postgresql://me:pw@host/db") == "postgresql://me:***@host/db"
    assert masked("sqlite:///a.db") == "sqlite:///a.db"


def test_cli_storage_and_report_mistakes_exit_2_and_create_nothing(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sweep", str(tiny_config), "--grid", "lora.r=2"]
    cases = [
        (["--storage", "sweep.db", "--out", str(tmp_path / "a")], "--storage 'sweep.db' is not understood"),
        (["--out", str(tmp_path / "b"), "--report"], "no sweep to report in"),
        (["--out", str(tmp_path / "d"), "--study", "x"], "--study names a study in shared storage"),
        (
            ["--storage", str(tmp_path / "c.journal"), "--out", str(tmp_path / "c"), "--report"],
            "no such journal",
        ),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the config's folder only


def test_cli_report_of_a_local_sweep_rebuilds_its_files(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", str(tiny_config), "--grid", "lora.r=2,8", "--out", str(out)]
    opts = options_from_args(build_parser().parse_args(args))
    assert run_options(replace(opts, train_command=FAKE, poll_s=0.02)) == 0
    before = (out / "sweep.json").read_text()
    (out / "sweep.json").unlink()
    assert main([*args, "--report"]) == 0
    assert (out / "sweep.json").read_text() == before


@pytest.mark.parametrize("shared", [False, True])
def test_a_sweep_leaves_optuna_logging_as_it_found_it(
    tmp_path: Path, shared: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        storage = str(tmp_path / "s.journal") if shared else None
        run_sweep(fake_options(tmp_path, storage, grid=["lora.r=2,4"]), echo=lambda s: None)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(level)
    captured = capsys.readouterr()
    assert "Trial 0 finished" not in captured.err + captured.out
    assert "A new study created" not in captured.err + captured.out
