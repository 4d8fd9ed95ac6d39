"""`lorakit combine`: cat is the exact weighted sum of the deltas, svd reports its error (falling
with rank), adapters of another base / DoRA adapters / bad weights exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lorakit import LoraConfig, inject, load_adapter, save_adapter
from lorakit.cli import main
from lorakit.model import lora_layers
from tiny_assets import write_run


def _base(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def _random_adapter(
    llama: Path, out: Path, seed: int, r: int, targets: list[str], dora: bool = False
) -> Path:
    model = _base(llama)
    torch.manual_seed(seed)
    inject(model, LoraConfig(r=r, alpha=2 * r, targets=targets, use_dora=dora))
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B["default"].weight.normal_(0, 0.1)
    save_adapter(model, out)
    return out


def _deltas(llama: Path, folders: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    model = _base(llama)
    for name, folder in folders.items():
        load_adapter(model, folder, name)
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in folders}
    for path, layer in lora_layers(model):
        for name in folders:
            if name in layer.adapter_names():
                out[name][path] = layer.delta_weight(name)
    return out


@pytest.fixture
def setup(tmp_path: Path, tiny_dirs: dict[str, Path]) -> tuple[Path, Path, Path, Path]:
    llama = tiny_dirs["llama"]
    a = _random_adapter(llama, tmp_path / "a", 1, 4, ["q_proj", "v_proj"])
    b = _random_adapter(llama, tmp_path / "b", 2, 2, ["q_proj", "o_proj"])  # other rank and targets
    cfg = write_run(tmp_path / "cfg", "causal_lm", llama)
    return llama, a, b, cfg


def test_cat_is_the_exact_weighted_sum(setup: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    llama, a, b, cfg = setup
    out = tmp_path / "ab"
    argv = ["combine", "--adapter", f"{a}=0.7", "--adapter", f"{b}=-0.3", "--method", "cat"]
    assert main([*argv, "--base", str(cfg), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["relative_error"] == 0.0 and report["ranks"] == [2, 4, 6]
    peft = json.loads((out / "adapter_config.json").read_text())
    assert peft["r"] in (2, 4, 6) and "q_proj" in str(peft["target_modules"])
    d = _deltas(llama, {"a": a, "b": b, "ab": out})
    assert set(d["ab"]) == set(d["a"]) | set(d["b"])
    for path, delta in d["ab"].items():
        expected = 0.7 * d["a"].get(path, 0) - 0.3 * d["b"].get(path, 0)
        torch.testing.assert_close(delta, expected, atol=1e-6, rtol=1e-5)
    # the folder is a complete lorakit adapter: eval accepts it
    assert main(["eval", str(cfg), "--adapter", str(out)]) == 0


def test_svd_reports_error_falling_with_rank(
    setup: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    llama, a, b, cfg = setup
    errors = []
    for rank in (1, 3, 6):
        out = tmp_path / f"svd{rank}"
        argv = ["combine", "--adapter", f"{a}=0.5", "--adapter", f"{b}=0.5", "--method", "svd"]
        assert main([*argv, "--rank", str(rank), "--base", str(cfg), "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert "svd relative error" in captured.err
        errors.append(json.loads(captured.out)["relative_error"])
    assert errors[0] > errors[1] > 0 and errors[2] < 1e-5  # rank 6 = 4 + 2 holds the sum exactly
    # the reported error is the true one
    d = _deltas(llama, {"a": a, "b": b, "s": tmp_path / "svd1"})
    num = den = 0.0
    for path, delta in d["s"].items():
        full = 0.5 * d["a"].get(path, 0) + 0.5 * d["b"].get(path, 0)
        num, den = num + float(((delta - full) ** 2).sum()), den + float((full**2).sum())
    assert errors[0] == pytest.approx((num / den) ** 0.5, rel=1e-4)


def test_combine_errors_exit_2(
    setup: tuple, tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    llama, a, b, cfg = setup
    other = tmp_path / "other_llama"
    model = _base(llama)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.add_(0.01)
    model.save_pretrained(str(other))
    for f in llama.glob("tokenizer*"):
        shutil.copy(f, other / f.name)
    c = _random_adapter(other, tmp_path / "c", 3, 4, ["q_proj", "v_proj"])
    dora = _random_adapter(llama, tmp_path / "d", 4, 4, ["q_proj"], dora=True)
    cases = [
        ([f"{a}=0.5", f"{c}=0.5"], ["--method", "cat"], "different base model"),
        ([f"{a}=0.5", f"{b}=0.5"], ["--method", "linear"], "same rank"),
        ([f"{a}=0.5", f"{dora}=0.5"], [], "DoRA adapters cannot be combined"),
        ([f"{a}=half"], [], "weight 'half' is not a number"),
        ([f"{a}=1"], ["--method", "cat", "--rank", "2"], "svd_rank"),
    ]
    for i, (adapters, extra, needle) in enumerate(cases):
        argv = ["combine", *[x for s in adapters for x in ("--adapter", s)], *extra]
        assert main([*argv, "--base", str(cfg), "--out", str(tmp_path / f"out{i}")]) == 2, needle
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
        assert not (tmp_path / f"out{i}").exists()
