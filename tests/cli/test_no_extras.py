"""Issue 12 item 1: without the optional packages the CLI works, and what needs one names its extra.

Each test runs lorakit in a child Python in which the optional packages cannot be imported (as
after `pip install lorakit` with no extras); tests/packaging/test_wheel_install.py does the same
with a real wheel in a fresh virtual environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_assets import write_run

SRC = Path(__file__).resolve().parents[2] / "src"
# The extras' packages (and the names their files go by in site-packages).
HIDDEN = ("optuna", "matplotlib", "mpl_toolkits", "tensorboard", "sacrebleu", "gguf", "pyarrow")


@pytest.fixture(scope="session")
def site_without_extras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This environment's site-packages as symlinks, less the extras' packages and metadata."""
    farm = tmp_path_factory.mktemp("site_without_extras")
    site = Path(torch.__file__).resolve().parents[1]
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].split(".")[0].lower()
        if stem.startswith(HIDDEN) or entry.suffix == ".pth":
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def lorakit_without_extras(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``lorakit ARGS`` in a Python that sees only ``site`` (no extras) and this checkout's src."""
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(site)]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-S", "-m", "lorakit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_the_hidden_packages_are_really_missing(site_without_extras: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {HIDDEN!r} if u.find_spec(m)])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(site_without_extras)])}
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.fixture
def cfg(tmp_path: Path, tiny_dirs: dict[str, Path]) -> Path:
    return write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=2, eval_every=2, save_every=2)


def test_help_and_training_work_without_extras(cfg: Path, tmp_path: Path, site_without_extras: Path) -> None:
    shown = lorakit_without_extras(site_without_extras, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "sweep" in shown.stdout and "Traceback" not in shown.stderr
    sub = lorakit_without_extras(site_without_extras, "sweep", "--help")  # the command needing optuna
    assert sub.returncode == 0 and "--grid" in sub.stdout and "Traceback" not in sub.stderr, sub.stderr
    trained = lorakit_without_extras(site_without_extras, "train", str(cfg))
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "adapter" / "lorakit_task.json").is_file()
    assert "no plots/: PNG plots of runs and sweeps needs the package" in trained.stderr
    assert 'pip install "lorakit[plots]"' in trained.stderr
    assert 'pip install "lorakit[tensorboard]"' in trained.stderr
    assert not (tmp_path / "run" / "plots").exists()


def test_sweep_without_optuna_names_the_extra(cfg: Path, site_without_extras: Path) -> None:
    done = lorakit_without_extras(site_without_extras, "sweep", str(cfg), "--grid", "lora.r=2,4")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "lorakit sweep needs the package 'optuna'" in done.stderr
    assert 'pip install "lorakit[sweep]"' in done.stderr and '"lorakit[train]"' in done.stderr


def test_parquet_without_pyarrow_names_the_extra(
    cfg: Path, tmp_path: Path, site_without_extras: Path
) -> None:
    (tmp_path / "train.parquet").write_bytes(b"PAR1")
    done = lorakit_without_extras(
        site_without_extras, "train", str(cfg), f"data.train={tmp_path / 'train.parquet'}"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'pip install "lorakit[parquet]"' in done.stderr


def test_bleu_asked_for_without_sacrebleu_names_the_extra(
    tmp_path: Path, tiny_dirs: dict[str, Path], site_without_extras: Path
) -> None:
    cfg = write_run(tmp_path, "seq2seq", tiny_dirs["t5"], max_steps=1, eval_every=None, save_every=None)
    done = lorakit_without_extras(
        site_without_extras, "train", str(cfg), "eval.metrics=[bleu]", "train.metric_for_best=bleu"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "BLEU" in done.stderr and 'pip install "lorakit[metrics]"' in done.stderr
    assert not (tmp_path / "run" / "adapter").exists()


def test_seq2seq_by_default_skips_bleu_without_sacrebleu(
    tmp_path: Path, tiny_dirs: dict[str, Path], site_without_extras: Path
) -> None:
    cfg = write_run(tmp_path, "seq2seq", tiny_dirs["t5"], max_steps=1, eval_every=None, save_every=None)
    done = lorakit_without_extras(site_without_extras, "train", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "no BLEU" in done.stderr and 'pip install "lorakit[metrics]"' in done.stderr


def test_gguf_model_without_gguf_names_the_extra(tmp_path: Path, site_without_extras: Path) -> None:
    from tiny_assets import make_gguf

    gguf = make_gguf(tmp_path / "tiny.gguf")
    done = lorakit_without_extras(
        site_without_extras, "inspect", str(gguf), LORAKIT_CACHE_DIR=str(tmp_path / "cache")
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'pip install "lorakit[gguf]"' in done.stderr
