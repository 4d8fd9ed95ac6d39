"""Fixed-seed fuzzing of adapter loading (the full campaign is ``make fuzz``).

The campaign runs its cases in a child process, so a native crash in a load shows up as a
``crash`` outcome here instead of taking pytest down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.fuzz_adapters import KINDS, build_fixture, judge_lorakit
from bench.fuzz_campaign import campaign
from bench.fuzz_mutations import WEIGHTS, join, split

ROOT = Path(__file__).resolve().parents[2]
CASES = 300


def test_fixed_seed_campaign_has_no_silent_change_no_foreign_exception_no_crash(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    cmd = [sys.executable, "-m", "bench.fuzz_campaign", "--cases", str(CASES), "--seed", "1234"]
    cmd += ["--chunk", str(CASES), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.is_file(), proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    outcomes = figures["outcomes"]
    assert figures["cases"] == CASES
    assert figures["failures"] == [], proc.stdout
    assert outcomes.get("silent", 0) == 0 and outcomes.get("other", 0) == 0 and outcomes.get("crash", 0) == 0
    assert outcomes["error"] + outcomes["identical"] == CASES
    # The mutations must really damage files: most cases are refused, and every kind of damage runs.
    assert outcomes["error"] > 0.7 * CASES
    assert len(figures["by_mutation"]) == 10
    assert "internal (caught by the safety net)" not in figures["errors_by_category"]
    assert proc.returncode == 0


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("clean")
    return {k: build_fixture(k, root) for k in KINDS}


def _rewrite(folder: Path, edit: Callable[[dict, dict], None]) -> None:
    from safetensors.torch import load, save

    path = folder / WEIGHTS
    data = path.read_bytes()
    _, raw, _ = split(data)
    meta = json.loads(raw)["__metadata__"]
    tensors = load(data)
    edit(tensors, meta)
    path.write_bytes(save(tensors, metadata=meta))


def test_judge_reports_a_silent_change_when_checks_are_bypassed(fixtures: dict, tmp_path: Path) -> None:
    """The oracle is not vacuous: a PEFT-style file (no checksum) with changed data is 'silent'."""
    fx = fixtures["bert"]
    folder = Path(shutil.copytree(fx.folder, tmp_path / "peft_like"))

    def damage(tensors: dict, meta: dict) -> None:
        key = sorted(k for k in tensors if "lora_B" in k)[0]
        tensors[key] = tensors[key] * 1.5
        for k in [k for k in meta if k.startswith("lorakit")]:
            del meta[k]

    _rewrite(folder, damage)
    assert judge_lorakit(fx, folder)[0] == "silent"


def test_the_same_damage_with_a_checksum_is_refused(fixtures: dict, tmp_path: Path) -> None:
    fx = fixtures["gpt2"]
    folder = Path(shutil.copytree(fx.folder, tmp_path / "damaged"))

    def damage(tensors: dict, meta: dict) -> None:
        key = sorted(k for k in tensors if "lora_B" in k)[0]
        tensors[key] = tensors[key] * 1.5

    _rewrite(folder, damage)
    outcome, message = judge_lorakit(fx, folder)
    assert outcome == "error" and "checksum" in message


def test_rewritten_consistent_file_is_identical(fixtures: dict, tmp_path: Path) -> None:
    """Re-serialising the same tensors (new header layout, same checksum) still loads identically."""
    fx = fixtures["bert"]
    folder = Path(shutil.copytree(fx.folder, tmp_path / "reserialised"))
    _rewrite(folder, lambda tensors, meta: None)
    data = (folder / WEIGHTS).read_bytes()
    _, raw, body = split(data)
    (folder / WEIGHTS).write_bytes(join(json.loads(raw), body, pad=False))
    assert judge_lorakit(fx, folder) == ("identical", "")


FAKE_WORKER = """
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
start, count = int(args["--start"]), int(args["--count"])
for i in range(start, start + count):
    if i == 3:
        os.abort()  # a native crash: SIGABRT, no Python exception, no cleanup
    case = dict(index=i, model="m", mutation="x", description="", outcome="identical", detail="", peft="")
    print("CASE " + json.dumps(case), flush=True)
"""


def test_driver_pins_a_native_crash_on_its_case_and_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    summary = campaign(seed=0, cases=8, chunk=5, worker=(sys.executable, str(script)))
    assert summary.cases == 8
    assert summary.outcomes["crash"] == 1 and summary.outcomes["identical"] == 7
    assert [f["index"] for f in summary.failures] == [3]
