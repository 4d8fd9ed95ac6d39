"""lorakit save -> load round trips, and strict, safe loading: every bad file is refused cleanly."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from conftest import logits, module_classes, randomize_lora, text_inputs, tiny_bert
from lorakit import (
    AdapterFileError,
    LoraConfig,
    LorakitError,
    add_adapter,
    inject,
    load_adapter,
    merge,
    save_adapter,
    set_adapter,
)
from lorakit.adapter_io import integrity
from lorakit.adapter_io.integrity import CHECKSUM_KEY, FINGERPRINT_KEY, checksum
from lorakit.adapter_io.keys import adapter_entries
from lorakit.model import AdapterState

WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"


def saved_tensors(model: nn.Module, name: str = "default") -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in adapter_entries(model, name).items()}


def read_file(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def rewrite(folder: Path, edit: Callable[[dict, dict], None], fix_checksum: bool = True) -> None:
    tensors, metadata = read_file(folder)
    edit(tensors, metadata)
    if fix_checksum:
        metadata[CHECKSUM_KEY] = checksum(tensors)
    save_file(tensors, str(folder / WEIGHTS), metadata=metadata)


def edit_config(folder: Path, edit: Callable[[dict], None]) -> None:
    raw = json.loads((folder / CONFIG).read_text())
    edit(raw)
    (folder / CONFIG).write_text(json.dumps(raw))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "cfg_extra",
    [
        {},
        {"bias": "lora_only"},
        {"bias": "all"},
        {"rank_pattern": {"value": 2}, "alpha_pattern": {"query": 3.0}, "use_rslora": True},
    ],
)
def test_round_trip_bert_variants(tmp_path: Path, cfg_extra: dict) -> None:
    model, inputs = tiny_bert(), text_inputs()
    inject(model, LoraConfig(r=4, targets=["query", "value"], modules_to_save=["classifier"], **cfg_extra))
    randomize_lora(model)
    with torch.no_grad():
        # Trained biases and the classifier copy must round-trip too, so make them differ from base.
        for n, p in model.named_parameters():
            if p.requires_grad and ".lora_" not in n:
                p.add_(0.05)
    check_round_trip(model, inputs, tiny_bert, tmp_path)


def test_round_trip_every_model(any_model, tmp_path: Path) -> None:
    from conftest import MODELS

    key, model, inputs, targets = any_model
    inject(model, LoraConfig(r=4, alpha=8, targets=targets))
    randomize_lora(model)
    check_round_trip(model, inputs, MODELS[key][0], tmp_path)


def check_round_trip(model: nn.Module, inputs: dict, build: Callable[[], nn.Module], folder: Path) -> None:
    expected, expected_out = saved_tensors(model), logits(model, inputs)
    save_adapter(model, folder)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG, WEIGHTS]
    fresh = build()
    load_adapter(fresh, folder)
    got = saved_tensors(fresh)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert torch.equal(logits(fresh, inputs), expected_out)
    assert not any(p.requires_grad for p in fresh.parameters())


def test_load_is_trainable_and_second_adapter(tmp_path: Path) -> None:
    model, inputs = tiny_bert(), text_inputs()
    inject(model, LoraConfig(targets=["query"]))
    randomize_lora(model)
    out = logits(model, inputs)
    save_adapter(model, tmp_path)
    fresh = load_adapter(tiny_bert(), tmp_path, is_trainable=True)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    # A second load keeps a frozen inference model frozen.
    frozen = load_adapter(tiny_bert(), tmp_path)
    load_adapter(frozen, tmp_path, "again")
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.__dict__["_lorakit"].active == "default"
    # Loaded as a second adapter it stays inactive until chosen.
    other = tiny_bert()
    inject(other, LoraConfig(targets=["value"]))
    base_out = logits(other, inputs)
    load_adapter(other, tmp_path, "loaded")
    assert torch.equal(logits(other, inputs), base_out)
    set_adapter(other, "loaded")
    assert torch.equal(logits(other, inputs), out)


def test_save_while_merged_keeps_fingerprint(tmp_path: Path) -> None:
    model = tiny_bert()
    inject(model, LoraConfig(targets=["query"]))
    randomize_lora(model)
    merge(model)
    save_adapter(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(tiny_bert(), tmp_path)


def test_save_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_bert()
    inject(model, LoraConfig(targets=["query"]))
    save_adapter(model, tmp_path)
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    randomize_lora(model)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(integrity.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good  # no temp files, old files intact
    save_adapter(model, tmp_path / "nested" / "dir")
    assert sorted(p.name for p in (tmp_path / "nested" / "dir").iterdir()) == [CONFIG, WEIGHTS]


def test_save_refuses_adapter_without_tensors(tmp_path: Path) -> None:
    model = tiny_bert()
    model.__dict__["_lorakit"] = AdapterState(
        configs={"empty": LoraConfig(targets=["query"])}, active="empty"
    )
    with pytest.raises(AdapterFileError, match="no tensors"):
        save_adapter(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_save_unknown_adapter_and_plain_model(tmp_path: Path) -> None:
    with pytest.raises(LorakitError, match="inject"):
        save_adapter(tiny_bert(), tmp_path)
    model = inject(tiny_bert(), LoraConfig(targets=["query"]))
    with pytest.raises(AdapterFileError, match="'nope'"):
        save_adapter(model, tmp_path, "nope")


# --------------------------------------------------------------------------- strict, safe loading


def _extra_module(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.key.lora_A.weight"] = torch.zeros(4, 32)


def _extra_key(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_C.weight"] = torch.zeros(4, 32)


def _unprefixed(t: dict, m: dict) -> None:
    t["junk"] = torch.zeros(1)


def _drop_b(t: dict, m: dict) -> None:
    del t["base_model.model.bert.encoder.layer.1.attention.self.query.lora_B.weight"]


def _drop_module(t: dict, m: dict) -> None:
    for k in [k for k in t if ".layer.1.attention.self.query." in k]:
        del t[k]


def _reshape(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"] = torch.zeros(3, 32)


def _int_dtype(t: dict, m: dict) -> None:
    key = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
    t[key] = t[key].to(torch.int32)


def _nan(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"][0, 0] = float("nan")


def _inf(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"][1, 1] = float("-inf")


def _bad_fingerprint_json(t: dict, m: dict) -> None:
    m[FINGERPRINT_KEY] = "{not json"


def _tamper(t: dict, m: dict) -> None:
    t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"][0, 0] += 1.0


Q0 = r"layer\.0\.attention\.self\.query"
TENSOR_CASES = {
    "unknown-module": (
        _extra_module,
        True,
        r"unexpected tensors for module '.*layer\.0\.attention\.self\.key'",
    ),
    "unknown-key": (_extra_key, True, r"unknown tensor key '.*lora_C\.weight'"),
    "unprefixed-key": (_unprefixed, True, "unknown tensor key 'junk'"),
    "missing-key": (
        _drop_b,
        True,
        r"missing tensor key '.*layer\.1\.attention\.self\.query\.lora_B\.weight'",
    ),
    "missing-module": (
        _drop_module,
        True,
        r"missing tensors for target '.*layer\.1\.attention\.self\.query'",
    ),
    "shape": (_reshape, True, rf"{Q0}\.lora_A\.weight' has shape \(3, 32\), the model expects \(4, 32\)"),
    "dtype": (_int_dtype, True, rf"{Q0}\.lora_A\.weight' has non-float dtype torch.int32"),
    "nan": (_nan, True, rf"{Q0}\.lora_B\.weight' holds NaN or Inf"),
    "inf": (_inf, True, rf"{Q0}\.lora_A\.weight' holds NaN or Inf"),
    "fingerprint-json": (_bad_fingerprint_json, True, "lorakit.fingerprint' is not valid JSON"),
    "checksum": (_tamper, False, "checksum mismatch"),
}


def _truncate(folder: Path) -> None:
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])


def _garbage(folder: Path) -> None:
    (folder / WEIGHTS).write_bytes(b"\x00" * 7)


def _pickle_file(folder: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buf)
    (folder / WEIGHTS).write_bytes(buf.getvalue())


FILE_CASES = {
    "truncated": (_truncate, "not a readable safetensors file"),
    "garbage": (_garbage, "not a readable safetensors file"),
    "pickle": (_pickle_file, "not a readable safetensors file"),
    "no-weights": (lambda f: (f / WEIGHTS).unlink(), "adapter_model.safetensors not found"),
    "no-config": (lambda f: (f / CONFIG).unlink(), "adapter_config.json not found"),
    "bad-json": (
        lambda f: (f / CONFIG).write_text('{\n  "r": 4,\n  oops\n}'),
        r"line 3, column 3: invalid JSON",
    ),
    "not-object": (lambda f: (f / CONFIG).write_text("[1, 2]"), "expected a JSON object, got list"),
    "not-utf8": (lambda f: (f / CONFIG).write_bytes(b"\xff\xfe{"), "not UTF-8"),
    "no-r": (lambda f: edit_config(f, lambda c: c.pop("r")), "field r is missing"),
    "no-alpha": (lambda f: edit_config(f, lambda c: c.pop("lora_alpha")), "field lora_alpha is missing"),
    "no-targets": (lambda f: edit_config(f, lambda c: c.pop("target_modules")), "field target_modules"),
    "bad-r": (lambda f: edit_config(f, lambda c: c.update(r=0)), r"LoraConfig\.r = 0 is invalid"),
    "bad-bias": (lambda f: edit_config(f, lambda c: c.update(bias="x")), r"LoraConfig\.bias = 'x'"),
    "dora": (lambda f: edit_config(f, lambda c: c.update(use_dora=True)), "use_dora"),
    "not-lora": (lambda f: edit_config(f, lambda c: c.update(peft_type="IA3")), "peft_type 'IA3'"),
    "unsupported": (
        lambda f: edit_config(f, lambda c: c.update(layer_replication=[[0, 1]])),
        "layer_replication",
    ),
}


@pytest.fixture
def good_adapter(tmp_path: Path) -> Path:
    model = tiny_bert()
    inject(model, LoraConfig(r=4, targets=["query"]))
    randomize_lora(model)
    folder = tmp_path / "adapter"
    save_adapter(model, folder)
    return folder


@pytest.fixture(params=["plain", "adapted"])
def target_model(request: pytest.FixtureRequest) -> nn.Module:
    model = tiny_bert()
    if request.param == "adapted":
        inject(model, LoraConfig(r=2, targets=["value"], modules_to_save=["classifier"]))
        randomize_lora(model, seed=5)
        add_adapter(model, "spare", LoraConfig(r=2, targets=["key"]))
    return model


def assert_load_fails_cleanly(model: nn.Module, folder: Path, match: str, **kwargs: object) -> None:
    inputs = text_inputs()
    classes, out = module_classes(model), logits(model, inputs)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    tensors = {n: t.clone() for n, t in model.state_dict().items()}
    state = model.__dict__.get("_lorakit")
    configs, active = (dict(state.configs), state.active) if state else (None, None)
    with pytest.raises(AdapterFileError, match=match):
        load_adapter(model, folder, "new", **kwargs)
    assert module_classes(model) == classes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    after = model.state_dict()
    assert after.keys() == tensors.keys() and all(torch.equal(after[k], tensors[k]) for k in tensors)
    assert torch.equal(logits(model, inputs), out)
    now = model.__dict__.get("_lorakit")
    assert (now is None) == (state is None)
    if now is not None:
        assert now.configs == configs and now.active == active


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_bad_tensors_refused_and_model_unchanged(
    good_adapter: Path, target_model: nn.Module, case: str
) -> None:
    edit, fix_checksum, match = TENSOR_CASES[case]
    rewrite(good_adapter, edit, fix_checksum)
    assert_load_fails_cleanly(target_model, good_adapter, match)


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_files_refused_and_model_unchanged(
    good_adapter: Path, target_model: nn.Module, case: str
) -> None:
    damage, match = FILE_CASES[case]
    damage(good_adapter)
    assert_load_fails_cleanly(target_model, good_adapter, match)


def test_missing_folder(tmp_path: Path) -> None:
    assert_load_fails_cleanly(tiny_bert(), tmp_path / "nope", "adapter folder not found")


def test_existing_adapter_name_refused(good_adapter: Path) -> None:
    model = inject(tiny_bert(), LoraConfig(targets=["value"]))
    with pytest.raises(LorakitError, match="already exists"):
        load_adapter(model, good_adapter, "default")


def test_invalid_adapter_name_refused(good_adapter: Path) -> None:
    with pytest.raises(LorakitError, match="A-Z a-z"):
        load_adapter(tiny_bert(), good_adapter, "bad name")


def test_unknown_config_fields_warned_and_ignored(good_adapter: Path) -> None:
    edit_config(good_adapter, lambda c: c.update(shiny_new_option=3, another={"a": 1}))
    with pytest.warns(
        UserWarning, match=r"unknown adapter_config.json fields \['another', 'shiny_new_option'\]"
    ):
        model = load_adapter(tiny_bert(), good_adapter)
    assert model.__dict__["_lorakit"].active == "default"


def other_base() -> nn.Module:
    """Same architecture and shapes as tiny_bert, different weights."""
    torch.manual_seed(123)
    model = tiny_bert()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def test_fingerprint_mismatch_refused(good_adapter: Path) -> None:
    model = other_base()
    assert_load_fails_cleanly(model, good_adapter, "different base model.*allow_base_mismatch=True")
    with pytest.warns(UserWarning, match="different base model"):
        load_adapter(model, good_adapter, allow_base_mismatch=True)
    assert model.__dict__["_lorakit"].active == "default"


def test_fingerprint_architecture_named(good_adapter: Path) -> None:
    def rename(t: dict, m: dict) -> None:
        fp = json.loads(m[FINGERPRINT_KEY])
        fp["architecture"] = "RobertaForSequenceClassification"
        m[FINGERPRINT_KEY] = json.dumps(fp)

    rewrite(good_adapter, rename)
    assert_load_fails_cleanly(tiny_bert(), good_adapter, "architecture 'RobertaForSequenceClassification'")


def test_file_without_fingerprint_loads_with_warning(good_adapter: Path) -> None:
    saved = saved_tensors(load_adapter(tiny_bert(), good_adapter))
    rewrite(good_adapter, lambda t, m: m.pop(FINGERPRINT_KEY))
    with pytest.warns(UserWarning, match="no base-model fingerprint"):
        model = load_adapter(tiny_bert(), good_adapter)
    got = saved_tensors(model)
    assert all(torch.equal(got[k], saved[k]) for k in saved)


@pytest.mark.parametrize(
    ("saved_in", "loaded_in"), [("float32", "bfloat16"), ("bfloat16", "float32"), ("float32", "float16")]
)
def test_same_base_in_another_precision_is_recognised(tmp_path: Path, saved_in: str, loaded_in: str) -> None:
    model = tiny_bert().to(getattr(torch, saved_in))
    inject(model, LoraConfig(targets=["query"]))
    randomize_lora(model)
    save_adapter(model, tmp_path)
    other = tiny_bert().to(getattr(torch, loaded_in))  # the same base in another precision
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(other, tmp_path)
    # A different base stays refused in any precision.
    assert_load_fails_cleanly(other_base().to(getattr(torch, loaded_in)), tmp_path, "compared in torch")


def test_fingerprint_from_older_file_without_dtype_table(good_adapter: Path) -> None:
    def strip(t: dict, m: dict) -> None:
        fp = json.loads(m[FINGERPRINT_KEY])
        del fp["dtypes"], fp["weights_sha256_as"]
        m[FINGERPRINT_KEY] = json.dumps(fp)

    rewrite(good_adapter, strip)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(tiny_bert(), good_adapter)
    assert_load_fails_cleanly(other_base(), good_adapter, "different values")
