"""Refusing model folders that would run code that came with them, before anything loads.

Two ways a downloaded model folder can execute code on load: pickled weights
(``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``: unpickling calls whatever the file
names) and ``auto_map`` entries that make transformers import Python files from the folder
(``trust_remote_code``). lorakit refuses the first always and the second unless the caller
passes ``trust_remote_code=True`` explicitly. Checks look only at file names and JSON; no
weight file is opened. The one loader, ``lorakit.model_sources``, runs them on every local
folder before transformers is told to read safetensors (or GGUF) only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lorakit.errors import LorakitError, UntrustedModelError
from lorakit.paths import check_path_text, safe_name

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFETENSORS_INDEX = "model.safetensors.index.json"
GGUF_MAGIC = b"GGUF"


def check_model_dir(
    path: str | os.PathLike[str], *, gguf_file: str | None = None, trust_remote_code: bool = False
) -> Path:
    """The model folder ``path``, after refusing anything that would need unpickling or remote code.

    Refused with ``UntrustedModelError``: a folder whose weights exist only as pickles, a
    safetensors index naming non-safetensors shards, a GGUF name that is not a plain GGUF file in
    the folder, and a config.json/tokenizer_config.json with ``auto_map`` (custom code) unless
    ``trust_remote_code is True``. A missing folder raises ``LorakitError``.
    """
    folder = check_path_text(path)
    if not folder.is_dir():
        raise LorakitError(f"{folder}: model folder not found (lorakit loads local folders only)")
    if gguf_file is not None:
        _check_gguf(folder, gguf_file)
    else:
        _check_weights(folder)
    if trust_remote_code is not True:
        for name in ("config.json", "tokenizer_config.json"):
            if "auto_map" in _read_json(folder / name):
                raise UntrustedModelError(
                    f"{folder / name}: the model needs its own Python code (auto_map); lorakit does not "
                    "run it unless trust_remote_code=True is set explicitly for a source you trust"
                )
    return folder


def check_tokenizer_dir(path: str | os.PathLike[str], *, gguf_file: str | None = None) -> Path:
    """The tokenizer folder ``path`` (weights need not be there), after refusing custom code
    (``auto_map`` in tokenizer_config.json) and a GGUF name that is not a GGUF file."""
    folder = check_path_text(path)
    if not folder.is_dir():
        raise LorakitError(f"{folder}: tokenizer folder not found")
    if gguf_file is not None:
        _check_gguf(folder, gguf_file)
    if "auto_map" in _read_json(folder / "tokenizer_config.json"):
        raise UntrustedModelError(
            f"{folder}: the tokenizer needs its own Python code (auto_map); lorakit does not run it"
        )
    return folder


def _check_weights(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    tensors = [n for n in names if n.endswith(".safetensors")]
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES) or n.endswith(".bin.index.json")]
    if not tensors:
        if pickles:
            raise UntrustedModelError(
                f"{folder}: weights only as pickle files ({', '.join(pickles)}); lorakit never loads "
                "pickles, which can run arbitrary code. Convert them to safetensors first, in an "
                "environment you are willing to expose to that code."
            )
        raise UntrustedModelError(f"{folder}: no *.safetensors weights found")
    index = _read_json(folder / SAFETENSORS_INDEX)
    shards = index.get("weight_map", {})
    if not isinstance(shards, dict):
        raise UntrustedModelError(f"{folder / SAFETENSORS_INDEX}: weight_map is not an object")
    for shard in sorted(set(map(str, shards.values()))):
        if not safe_name(shard).endswith(".safetensors"):
            raise UntrustedModelError(f"{folder / SAFETENSORS_INDEX}: shard {shard!r} is not safetensors")


def _check_gguf(folder: Path, gguf_file: str) -> None:
    file = folder / safe_name(gguf_file)
    if not file.is_file():
        raise LorakitError(f"{file}: GGUF file not found")
    with file.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise UntrustedModelError(f"{file}: not a GGUF file (bad magic bytes)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise LorakitError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(value, dict):
        raise LorakitError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def refuse_unsafe_options(kwargs: dict[str, Any]) -> None:
    """Refuse loader options that would re-open the doors this module closes."""
    for key in ("use_safetensors", "weights_only", "trust_remote_code"):
        if key in kwargs:
            raise UntrustedModelError(
                f"{key}={kwargs[key]!r} is refused: lorakit loads no pickles and no remote code"
            )
