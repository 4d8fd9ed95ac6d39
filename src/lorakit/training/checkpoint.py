"""Resumable checkpoints: safetensors for tensors, JSON for the rest, never a pickle.

A checkpoint is written into ``checkpoints/.tmp-step-N-PID`` and renamed to ``step-N`` when
every file is on disk, so a directory named ``step-N`` is always complete.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.adapter_io import save_adapter
from lorakit.errors import LorakitError

STEP_DIR = re.compile(r"step-(\d+)")
TRAINER_STATE = "trainer_state.json"


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_payload(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def rng_payload() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, meta


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``root/step-<step>`` atomically and keep only the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_tensors(model), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_meta = optimizer_payload(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    _write_json(tmp / "optimizer.json", opt_meta)
    rng_tensors, rng_meta = rng_payload()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    _write_json(tmp / "rng.json", rng_meta)
    save_adapter(model, tmp / "adapter")
    for name, text in (extra_files or {}).items():
        (tmp / "adapter" / name).write_text(text, encoding="utf-8")
    _write_json(tmp / TRAINER_STATE, trainer_state)
    _fsync_tree(tmp)
    final = root / f"step-{step}"
    if final.exists():
        old = root / f".old-step-{step}-{os.getpid()}"
        os.replace(final, old)
        shutil.rmtree(old)
    os.replace(tmp, final)
    for stale in list_checkpoints(root)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Leftover temporary folders are removed."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.name.startswith((".tmp-step-", ".old-step-")):
            shutil.rmtree(child, ignore_errors=True)
            continue
        m = STEP_DIR.fullmatch(child.name)
        if m and (child / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def read_trainer_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LorakitError(f"{folder}: unreadable checkpoint state ({e})") from None


def restore_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Put trainable weights, optimizer and RNG states back; returns the trainer state."""
    try:
        weights = load_file(str(folder / "trainable.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        opt_meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        rng_tensors = load_file(str(folder / "rng.safetensors"))
        rng_meta = json.loads((folder / "rng.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, Exception) as e:  # safetensors raises its own types
        raise LorakitError(f"{folder}: damaged checkpoint ({e})") from None
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        diff = sorted(set(weights) ^ expected)[:3]
        raise LorakitError(f"{folder}: checkpoint does not match this model/config (e.g. {diff})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state: dict[int, dict[str, Any]] = {}
    for key, value in opt_tensors.items():
        idx, _, field = key.partition(".")
        state.setdefault(int(idx), {})[field] = value
    for idx, fields in opt_meta["scalars"].items():
        state.setdefault(int(idx), {}).update(fields)
    optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    _restore_rng(rng_tensors, rng_meta)
    return read_trainer_state(folder)


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = meta["python"]
    random.setstate((version, tuple(py_state), gauss))
