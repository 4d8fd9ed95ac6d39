"""De-quantised GGUF models, cached as plain safetensors folders keyed by the GGUF's hash.

transformers reads a ``.gguf`` file by de-quantising every tensor to float32 and converting its
tokenizer, which takes longer than the rest of a start (12.7 s + 3.6 s for SmolLM2-135M on a
shared 2-core CPU). The result is a plain float32 causal LM, so it is written once as a model
folder (``config.json``, ``model.safetensors``, tokenizer JSON files) under the cache and every
later start loads that instead: safetensors and JSON only, never a pickle.

The folder is named by the SHA-256 of the GGUF file and the transformers version that
de-quantised it, built in a temporary folder and renamed into place when complete, so a
half-written entry is never used and two processes filling the cache at once are harmless.
Cache root: ``$LORAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lorakit``, else ``~/.cache/lorakit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from lorakit.errors import LorakitError

CACHE_ENV = "LORAKIT_CACHE_DIR"
MARKER = "lorakit_gguf.json"
"""Written last into a cache entry: its presence means the entry is complete."""


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lorakit"


_DIGESTS: dict[tuple[str, int, int], str] = {}
"""SHA-256 of files already hashed by this process, by (real path, size, mtime)."""


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path`` (hashed once per process while the file is unchanged)."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def entry_path(gguf_sha256: str) -> Path:
    """The cache folder of the GGUF file with this SHA-256 (it may not exist yet)."""
    import transformers

    return cache_root() / "gguf" / f"{gguf_sha256[:32]}-transformers-{transformers.__version__}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def forget_gguf_origin(model: nn.Module) -> None:
    """transformers de-quantises GGUF weights to plain float tensors but keeps the model marked
    as quantized, which forbids dtype casts and would write a GGUF quantization_config into a
    saved config.json (that folder could then not be loaded without the .gguf file)."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def store(entry: Path, gguf_name: str, gguf_sha256: str, model: Any, tokenizer: Any) -> None:
    """Save a de-quantised ``model`` and its ``tokenizer`` as the cache folder ``entry``.

    Everything is written into a temporary sibling, marked complete, then renamed into place."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _write_marker(tmp, gguf_name, gguf_sha256)
        _publish(tmp, entry)
    except OSError as e:
        raise LorakitError(
            f"cannot write the de-quantised model cache {entry} ({e.strerror or e}); "
            f"point {CACHE_ENV} at a writable folder"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_marker(folder: Path, gguf_name: str, gguf_sha256: str) -> None:
    import transformers

    info: dict[str, Any] = {
        "gguf_file": gguf_name,
        "gguf_sha256": gguf_sha256,
        "transformers": transformers.__version__,
        "dtype": "float32",
    }
    (folder / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _publish(tmp: Path, entry: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    if entry.exists() and not is_complete(entry):
        shutil.rmtree(entry, ignore_errors=True)  # left by a writer of an older layout
    try:
        os.rename(tmp, entry)
    except OSError:
        if not is_complete(entry):  # another process published first: use theirs
            raise
