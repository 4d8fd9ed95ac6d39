"""`lorakit train` under torchrun on CPU (gloo) with a tiny BERT.

DDP equals a single process with the same global batch; an FSDP adapter is a normal adapter
that reproduces the sharded model's logits; a job killed on one rank resumes to the same adapter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tests.tiny_assets import make_model, write_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12
# Single process: 4 examples per micro-batch. Two ranks: 2 each, the same 4 examples.
SINGLE = ["train.batch_size=4", "train.grad_accum=2"]
TWO_RANKS = ["train.batch_size=2", "train.grad_accum=2"]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")


def torchrun_cmd(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        *args,
    ]


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def adapter(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def train_losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train"]


def assert_same_adapter(a: Path, b: Path, atol: float) -> None:
    ta, ma = adapter(a)
    tb, mb = adapter(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
        assert torch.allclose(ta[k], tb[k], atol=atol, rtol=0), (k, (ta[k] - tb[k]).abs().max())
    assert ma.keys() == mb.keys()
    assert ma["lorakit.fingerprint"] == mb["lorakit.fingerprint"]
    assert (a / "adapter_config.json").read_text() == (b / "adapter_config.json").read_text()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist")
    model = make_model(root / "bert", "bert")
    # Base-model dropout draws from each rank's own RNG stream, so with it on no 2-rank run could
    # match a single process step for step; the LoRA dropout is 0 in write_run as well.
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg))
    config = write_run(
        root / "data", "classification", model, n_train=40,
        max_steps=STEPS, eval_every=6, save_every=3, log_every=1, keep_best=False, warmup_ratio=0.2,
    )  # fmt: skip
    return root, config


@pytest.fixture(scope="module")
def single(setup: tuple[Path, Path]) -> Path:
    root, config = setup
    run(
        [sys.executable, "-m", "lorakit", "train", str(config), *SINGLE, "--output-dir", str(root / "single")]
    )
    return root / "single"


@pytest.fixture(scope="module")
def ddp(setup: tuple[Path, Path]) -> Path:
    root, config = setup
    run(torchrun_cmd(2, "-m", "lorakit", "train", str(config), *TWO_RANKS, "--output-dir", str(root / "ddp")))
    return root / "ddp"


def test_two_rank_ddp_equals_single_process_with_same_global_batch(single: Path, ddp: Path) -> None:
    assert_same_adapter(single / "adapter", ddp / "adapter", atol=1e-5)
    one, two = train_losses(single), train_losses(ddp)
    assert len(one) == len(two) == STEPS  # rank 0 alone writes metrics
    assert one == pytest.approx(two, abs=1e-5)
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["final_step"] == STEPS
    # Sharded evaluation gathers to the metrics of a whole-set evaluation.
    rows = [map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) for d in (single, ddp)]
    evals = [[r for r in run_rows if r["split"] == "eval"] for run_rows in rows]
    assert len(evals[0]) == len(evals[1]) == 2
    for a, b in zip(*evals, strict=True):
        assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_fsdp_adapter_loads_in_one_process_with_the_sharded_logits(
    setup: tuple[Path, Path], single: Path
) -> None:
    root, config = setup
    out = root / "fsdp"
    logits_file = root / "fsdp_logits.safetensors"
    args = [str(config), str(out), str(logits_file), "train.strategy=fsdp", *TWO_RANKS]
    run(torchrun_cmd(2, "-m", "tests.distributed.fsdp_worker", *args))
    # The gathered adapter has the same format (and, up to float noise, content) as a one-process run.
    assert_same_adapter(single / "adapter", out / "adapter", atol=1e-5)
    from tests.distributed.fsdp_worker import single_process_logits

    with safe_open(str(logits_file), framework="pt") as f:
        sharded = f.get_tensor("logits")
    loaded = single_process_logits(config, out / "adapter")
    assert sharded.shape == loaded.shape
    assert torch.allclose(sharded, loaded, atol=1e-5, rtol=0), (sharded - loaded).abs().max()


def _rank_pids(launcher: subprocess.Popen[bytes]) -> dict[int, int]:
    """{RANK: pid} of the workers torchrun started (its direct children)."""
    found = {}
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = [e for e in environ if e.startswith(b"RANK=")]
        if rank:
            found[int(rank[0].split(b"=")[1])] = int(child)
    return found


def test_killing_one_rank_then_resuming_gives_the_uninterrupted_adapter(
    setup: tuple[Path, Path], ddp: Path
) -> None:
    root, config = setup
    out = root / "killed"
    cmd = torchrun_cmd(2, "-m", "lorakit", "train", str(config), *TWO_RANKS, "--output-dir", str(out))
    log = root / "killed.log"
    with log.open("w") as sink:
        launcher = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "step-3").is_dir():
            assert launcher.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        os.kill(_rank_pids(launcher)[1], signal.SIGKILL)
        launcher.wait(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0  # the job dies with its rank
    assert not (out / "adapter").exists(), "the run finished before the kill: nothing was tested"
    # The --nproc convenience re-executes itself under torchrun.
    resume = ["--output-dir", str(out), "--resume", "--nproc", "2"]
    run([sys.executable, "-m", "lorakit", "train", str(config), *TWO_RANKS, *resume])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] and summary["final_step"] == STEPS
    assert_same_adapter(ddp / "adapter", out / "adapter", atol=0.0)
    assert train_losses(out) == train_losses(ddp)
