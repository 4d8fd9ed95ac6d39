"""DoRA, pissa, rsLoRA, LoRA+ and a quantized (nf4) base from the YAML config, end to end through
the CLI: train -> eval (reproduces the training validation loss) -> merge -> plain reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorakit.cli import main
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.setup import load_for_inference
from tiny_assets import write_run

CASES = {
    "dora": {"lora": {"use_dora": True}},
    "pissa": {"lora": {"init": "pissa"}},
    "rslora": {"lora": {"use_rslora": True}},
    "nf4": {"quantize": "nf4", "lora": {"use_dora": True}},
}


def _config(tmp_path: Path, llama: Path, extra: dict, **train: object) -> Path:
    import yaml

    cfg = write_run(
        tmp_path, "causal_lm", llama, n_train=32, max_steps=6, eval_every=3, save_every=None, **train
    )
    data = yaml.safe_load(cfg.read_text())
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.tensor([[5, 30, 31, 40, 41, 12], [5, 12, 13, 20, 21, 22]])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_from_yaml_end_to_end(
    case: str, tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _config(tmp_path, tiny_dirs["llama"], CASES[case], lr=3e-2)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    peft = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert peft["use_dora"] is (case in ("dora", "nf4"))
    assert peft["use_rslora"] is (case == "rslora")
    if case == "pissa":  # saved as the equivalent plain LoRA against the original weights
        assert peft["r"] == 8 and peft["init_lora_weights"] is True
    assert summary["quantize"] == ("nf4" if case == "nf4" else None)
    if case == "nf4":
        assert 0 < summary["quantized_weight_mb"] < 0.05
    capsys.readouterr()

    # eval rebuilds the trained model (quantized base, pissa adapter on the original base)
    assert main(["eval", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(summary["best_metric"], abs=1e-5)

    merged = tmp_path / "merged"
    assert main(["merge", "--adapter", str(run / "adapter"), "--out", str(merged)]) == 0
    err = capsys.readouterr().err
    assert ("nf4-quantized base; merging into the float base" in err) is (case == "nf4")
    plain = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    _, float_model, _ = load_for_inference(load_config(cfg), run / "adapter", quantized=False)
    torch.testing.assert_close(_logits(plain), _logits(float_model), atol=1e-5, rtol=1e-5)
    if case == "nf4":
        _, q_model, _ = load_for_inference(load_config(cfg), run / "adapter")
        assert not torch.allclose(_logits(q_model), _logits(float_model), atol=1e-4)


def test_merge_requantize_reports_error(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _config(tmp_path, tiny_dirs["llama"], {"quantize": {"method": "nf4", "block_size": 32}})
    assert main(["train", str(cfg), "train.max_steps=2", "train.eval_every=null"]) == 0
    adapter = tmp_path / "run" / "adapter"
    floated, requant = tmp_path / "float", tmp_path / "requant"
    assert main(["merge", "--adapter", str(adapter), "--out", str(floated)]) == 0
    capsys.readouterr()
    assert main(["merge", "--adapter", str(adapter), "--out", str(requant), "--requantize"]) == 0
    err = capsys.readouterr().err
    assert "re-quantized 14 weights (nf4): relative weight error mean" in err
    a = AutoModelForCausalLM.from_pretrained(str(floated)).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(requant)).state_dict()
    w, q = a["model.layers.0.self_attn.q_proj.weight"], b["model.layers.0.self_attn.q_proj.weight"]
    rel = float(torch.linalg.norm(q - w) / torch.linalg.norm(w))
    assert 0.01 < rel < 0.2  # NF4's error on Gaussian-like weights is about 0.1
    # 16 NF4 levels per 32-weight block: at most 16 distinct values in each block
    assert all(len(torch.unique(block)) <= 16 for block in q.reshape(-1, 32))
    torch.testing.assert_close(a["lm_head.weight"], b["lm_head.weight"])  # heads stay float
    capsys.readouterr()
    plain_cfg = write_run(tmp_path / "p", "causal_lm", tiny_dirs["llama"], max_steps=1, eval_every=None)
    assert main(["train", str(plain_cfg)]) == 0
    capsys.readouterr()
    argv = ["merge", "--adapter", str(tmp_path / "p" / "run" / "adapter"), "--out", str(tmp_path / "x")]
    assert main([*argv, "--requantize"]) == 2
    assert "not trained with `quantize:`" in capsys.readouterr().err


def test_quantized_resume_is_exact(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    extra = {"quantize": {"method": "nf4", "double_quant": True}, "lora": {"init": "pissa"}}
    common = ["train.scheduler=constant", "train.warmup_steps=0", "train.eval_every=null"]
    cfg = _config(tmp_path, tiny_dirs["llama"], extra)
    assert main(["train", str(cfg), *common, "output_dir=" + str(tmp_path / "straight")]) == 0
    half = ["output_dir=" + str(tmp_path / "resumed"), "train.save_every=3"]
    assert main(["train", str(cfg), *common, *half, "train.max_steps=3"]) == 0
    # The first half stopped early through max_steps; lifting it on resume is a deliberate change.
    lift = "resume_allow_changes=[train.max_steps]"
    assert main(["train", str(cfg), *common, *half, lift, "--resume"]) == 0
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step-3") and summary["final_step"] == 6
    a = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)


def test_lora_plus_groups_from_yaml(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    cfg = _config(tmp_path, tiny_dirs["llama"], {}, lr=1e-3, lr_ratio_b=16, scheduler="constant")
    assert main(["train", str(cfg), "train.max_steps=2", "train.save_every=2", "train.warmup_steps=0"]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "step-2"
    groups = json.loads((ckpt / "optimizer.json").read_text())["param_groups"]
    assert sorted(g["lr_scale"] for g in groups) == [1.0, 16.0]
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])
    from safetensors.torch import load_file

    names = list(load_file(str(ckpt / "trainable.safetensors")))
    b_group = next(g for g in groups if g["lr_scale"] == 16.0)
    assert len(b_group["params"]) == sum(".lora_B." in n for n in names) == 4  # 2 blocks x q, v


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("lora.init=svd", "lora.init = 'svd' is invalid"),
        ("lora.use_dora=maybe", "lora.use_dora = 'maybe' is invalid"),
        ("quantize=nf5", "quantize.method = 'nf5' is invalid"),
        ("quantize.block_size=63", "quantize.block_size = 63 is invalid"),
        ("quantize.skp=[x]", "unknown key quantize.skp (did you mean quantize.skip?)"),
        ("train.lr_ratio_b=0", "train.lr_ratio_b = 0 is invalid"),
    ],
)
def test_bad_variant_values_exit_2(
    override: str, needle: str, tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "causal_lm", tiny_dirs["llama"])
    assert main(["train", str(cfg), override]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_classification_head_stays_float(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    from lorakit.quant import is_quantized

    cfg = write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=2, eval_every=None, save_every=None
    )
    assert main(["train", str(cfg), "quantize={method: int8, skip: [pooler.dense]}"]) == 0
    _, model, config = load_for_inference(None, tmp_path / "run" / "adapter")
    assert config.quantize is not None and config.quantize.method == "int8"
    quantized = {n for n, m in model.named_modules() if is_quantized(m)}
    assert "bert.encoder.layer.0.attention.self.query.base_layer" in quantized
    assert not any(n.startswith(("classifier", "bert.pooler")) for n in quantized)
    assert any(n.startswith("bert.encoder.layer.1.output.dense") for n in quantized)
