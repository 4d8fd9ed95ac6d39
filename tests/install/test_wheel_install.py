"""Issue 12: the wheel, installed with no extras into a fresh virtual environment, is a working CLI.

Builds the wheel from a copy of the sources, creates an empty venv, installs the wheel with pip
(dependencies from the package index or pip's cache, torch pinned by constraints-cpu.txt) and
runs `lorakit --help`, a 2-step classification training on a tiny model, and `lorakit sweep`,
which must name the extra it needs (exit 2).

torch is the one dependency not unpacked again: the venv gets a .pth line to a folder of links to
the torch this test runs with (the same CPU wheel, already installed from this machine's disk)
and its own dependencies, so pip finds `torch==2.13.0` satisfied. Unpacking torch's 880 MB took
2 minutes on the shared CI machine; everything else pip installs for real (--no-compile: byte-
compiling all of transformers took 50 of pip's 70 s; the modules lorakit imports compile on use).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_assets import make_model, write_run

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("optuna", "matplotlib", "tensorboard", "sacrebleu", "gguf", "pyarrow")
pytestmark = pytest.mark.slow


def run(argv: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the sources (the checkout itself gets no build/ or egg-info)."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp / "dist",
            source,
        ],
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("lorakit-*.whl")
    return wheel


def distribution_closure(name: str) -> list[metadata.Distribution]:
    """``name``'s installed distribution and those it requires (extras left out), recursively."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", wanted).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(wanted)
        except metadata.PackageNotFoundError:
            continue
        found[key] = dist
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return list(found.values())


def link_torch(venv_python: Path, tmp: Path) -> None:
    """Make this environment's torch (and only torch with its dependencies) visible in the venv."""
    farm = tmp / "torch_site"
    farm.mkdir()
    for dist in distribution_closure("torch"):
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (farm / top).exists():
                (farm / top).symlink_to(source)
    purelib = run(
        [venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp
    ).stdout.strip()
    (Path(purelib) / "lorakit_test_torch.pth").write_text(f"{farm}\n")


def test_wheel_without_extras_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    link_torch(python, tmp_path)
    installed = run(
        [
            sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
            "-c", ROOT / "constraints-cpu.txt", "torch==2.13.0", wheel,
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = run(
        [
            python, "-c",
            "import importlib.util as u, lorakit, torch; "
            f"print(lorakit.__file__, torch.__version__, [m for m in {EXTRA_MODULES!r} if u.find_spec(m)])",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    where, torch_version, extras = probe.stdout.split(maxsplit=2)
    assert Path(where).is_relative_to(venv) and torch_version == "2.13.0+cpu" and extras.strip() == "[]"

    lorakit = venv / "bin" / "lorakit"
    shown = run([lorakit, "--help"], cwd=tmp_path)
    assert shown.returncode == 0 and "sweep" in shown.stdout, shown.stderr

    model = make_model(tmp_path / "tiny_bert", "bert")
    cfg = write_run(tmp_path / "job", "classification", model, max_steps=2, eval_every=2)
    trained = run([lorakit, "train", cfg], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Traceback" not in trained.stderr
    adapter = tmp_path / "job" / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "lorakit_task.json").is_file()
    assert 'pip install "lorakit[plots]"' in trained.stderr  # skipped outputs are named, not a failure

    swept = run([lorakit, "sweep", cfg, "--grid", "lora.r=2,4"], cwd=tmp_path)
    assert swept.returncode == 2, swept.stderr
    assert "Traceback" not in swept.stderr
    assert '"lorakit[train]"' in swept.stderr and 'pip install "lorakit[sweep]"' in swept.stderr
    assert not (tmp_path / "job" / "run-sweep").exists()
