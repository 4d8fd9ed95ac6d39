"""Resumable checkpoints: safetensors for tensors, JSON for the rest, never a pickle.

A checkpoint is written into ``checkpoints/.tmp-step-N-PID`` and renamed to ``step-N`` when
every file is on disk (fsynced, and the folder entry too), so a directory named ``step-N`` is
always complete. Replacing or pruning a checkpoint first renames it to ``.old-step-N-PID`` /
``.del-step-N-PID``, so a process killed at any moment leaves either the complete checkpoint or
a dot-folder that ``list_checkpoints`` recognises: it puts a lone ``.old`` back and removes the rest.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.adapter_io import adapter_payload, write_adapter
from lorakit.distributed import copy_full_into, full_tensor, reshard_optimizer_state
from lorakit.errors import AdapterFileError, CheckpointError, LorakitError, TrainingDiverged

STEP_DIR = re.compile(r"step-(\d+)")
LEFTOVER = re.compile(r"\.(tmp|old|del)-step-(\d+)-\d+")
TRAINER_STATE = "trainer_state.json"


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a crash of the machine, not just the process)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    params = model.named_parameters()
    return {n: full_tensor(p.detach()).cpu().contiguous() for n, p in params if p.requires_grad}


def optimizer_payload(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = full_tensor(value.detach()).cpu().contiguous()
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
    is_main: bool = True,
    complete_adapter: Callable[[Path], None] | None = None,
) -> Path | None:
    """Write ``root/step-<step>`` atomically and keep only the newest ``keep`` checkpoints.

    Every rank of a torchrun job calls it (sharded FSDP tensors are gathered from all ranks);
    only ``is_main`` writes. ``complete_adapter(folder)`` adds files to the checkpoint's
    ``adapter/`` (tokenizer, task file) so that it loads like a final adapter.
    """
    trainable = trainable_tensors(model)
    bad = [n for n, t in trainable.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        # Never let a checkpoint hold NaN/Inf weights: the newest one must stay a good one.
        raise TrainingDiverged(
            f"trainable weights are not finite at step {step} (e.g. {bad[0]}); checkpoint not written. "
            f"Last good checkpoint: {_newest(root)}"
        )
    opt_tensors, opt_meta = optimizer_payload(optimizer)
    adapter = adapter_payload(model)
    if not is_main:
        return None
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    try:
        _write_files(tmp, trainable, opt_tensors, opt_meta, adapter, extra_files or {})
        if complete_adapter is not None:
            complete_adapter(tmp / "adapter")
        _write_json(tmp / TRAINER_STATE, trainer_state)  # last: its presence marks the folder complete
        _fsync_tree(tmp)
    except (OSError, AdapterFileError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = e if isinstance(e, OSError) else e.__cause__
        reason = getattr(cause, "strerror", None) or str(e)
        raise CheckpointError(
            f"cannot write checkpoint step-{step} in {root} ({reason}); nothing was replaced. "
            f"Last complete checkpoint: {_newest(root)}"
        ) from e
    final = root / f"step-{step}"
    if final.exists():
        old = root / f".old-step-{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    for stale in list_checkpoints(root)[:-keep]:
        doomed = root / f".del-{stale.name}-{os.getpid()}"
        os.replace(stale, doomed)  # atomic: a half-deleted folder never looks like a checkpoint
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def _write_files(
    tmp: Path,
    trainable: dict[str, torch.Tensor],
    opt_tensors: dict[str, torch.Tensor],
    opt_meta: dict[str, Any],
    adapter: Any,
    extra_files: dict[str, str],
) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable, str(tmp / "trainable.safetensors"))
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    _write_json(tmp / "optimizer.json", opt_meta)
    rng_tensors, rng_meta = rng_payload()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    _write_json(tmp / "rng.json", rng_meta)
    write_adapter(adapter, tmp / "adapter")
    for name, text in extra_files.items():
        (tmp / "adapter" / name).write_text(text, encoding="utf-8")


def _newest(root: Path) -> str:
    found = list_checkpoints(root)
    return str(found[-1]) if found else "none"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first, after ``recover_leftovers``."""
    if not root.is_dir():
        return []
    recover_leftovers(root)
    found = []
    for child in root.iterdir():
        m = STEP_DIR.fullmatch(child.name)
        if m and (child / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def recover_leftovers(root: Path) -> list[str]:
    """Tidy what a killed writer left in ``root``; returns the names removed or put back.

    A complete ``.old-step-N`` whose ``step-N`` is missing was being replaced when the process
    died: it is the checkpoint, so it is renamed back. Temporary, doomed and incomplete folders go.
    """
    touched = []
    for child in sorted(root.iterdir()):
        m = LEFTOVER.fullmatch(child.name)
        step_dir = STEP_DIR.fullmatch(child.name)
        try:
            if m and m.group(1) == "old" and (child / TRAINER_STATE).is_file():
                final = root / f"step-{m.group(2)}"
                if not final.exists():
                    os.replace(child, final)
                    touched.append(child.name)
                    continue
            if m or (step_dir and child.is_dir() and not (child / TRAINER_STATE).is_file()):
                shutil.rmtree(child)
                touched.append(child.name)
        except FileNotFoundError:  # another rank of the same job tidied it first
            continue
    return touched


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
    copy_full_into({n: params[n] for n in weights}, weights)
    state: dict[int, dict[str, Any]] = {}
    for key, value in opt_tensors.items():
        idx, _, field = key.partition(".")
        state.setdefault(int(idx), {})[field] = value
    for idx, fields in opt_meta["scalars"].items():
        state.setdefault(int(idx), {}).update(fields)
    optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    reshard_optimizer_state(optimizer)  # FSDP: full tensors from the file back into shards
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
