"""Strict, safe loading: every bad file or foreign base is refused and leaves the model unchanged."""

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

from conftest import adapter_tensors, logits, module_classes, randomize_lora, text_inputs, tiny_bert
from lorakit import (
    AdapterFileError,
    LoraConfig,
    LorakitError,
    add_adapter,
    inject,
    load_adapter,
    save_adapter,
)
from lorakit.adapter_io.integrity import CHECKSUM_KEY, FINGERPRINT_KEY, checksum

WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"


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
    "shape": (_reshape, True, rf"rank 4, but its tensor '.*{Q0}\.lora_A\.weight' has shape \(3, 32\)"),
    "dtype": (_int_dtype, True, rf"{Q0}\.lora_A\.weight': dtype I32 is not a float type"),
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
    "truncated": (_truncate, r"adapter_model\.safetensors: truncated"),
    "garbage": (_garbage, r"adapter_model\.safetensors: truncated: 7 bytes"),
    "pickle": (_pickle_file, r"adapter_model\.safetensors: header length \d+ is impossible"),
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
    saved = adapter_tensors(load_adapter(tiny_bert(), good_adapter))
    # A PEFT-saved file carries none of lorakit's metadata (a lorakit file missing only some of it
    # is refused as corrupt, see tests/hardening).
    rewrite(
        good_adapter,
        lambda t, m: [m.pop(k) for k in list(m) if k.startswith("lorakit.")],
        fix_checksum=False,
    )
    with pytest.warns(UserWarning, match="no base-model fingerprint"):
        model = load_adapter(tiny_bert(), good_adapter)
    got = adapter_tensors(model)
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
