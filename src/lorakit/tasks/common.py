"""What the four tasks share: the task contract, batched forward passes, generation, label maps."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.data.batching import Feature, eval_batches, pad_features
from lorakit.data.readers import Record
from lorakit.distributed import EvalShard, all_reduce_sums, rank, shard_eval_batches, world_size
from lorakit.errors import AdapterFileError, DataError

TASK_FILE = "lorakit_task.json"


class Task(Protocol):
    """The contract each task module fulfils (classification, token_classification, ...)."""

    name: str
    default_metric: str
    labels: list[Any] | None
    tokenizer: Any

    def load_model(self) -> nn.Module: ...

    def head_modules(self, model: nn.Module) -> list[str]: ...

    def encode(self, records: list[Record], source: str, with_targets: bool = True) -> list[Feature]: ...

    def collate(self, features: list[Feature]) -> dict[str, torch.Tensor]: ...

    def evaluate(self, model: nn.Module, records: list[Record], features: list[Feature]) -> dict[str, Any]:
        """Scalar metrics (float) plus details: sacrebleu signatures (str), ``per_type`` entity
        scores, a ``confusion_matrix`` {labels, counts}."""
        ...

    def predict(self, model: nn.Module, records: list[Record]) -> list[dict[str, Any]]: ...


def accepted_inputs(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def feature_length(f: Feature) -> int:
    ids = f["input_ids"]
    return len(ids) if isinstance(ids, list) else 1


def batched(
    model: nn.Module, features: list[Feature], collate: Any, batch_size: int, sharded: bool = False
) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """(indices, batch, outputs) for every evaluation batch, under no_grad and eval mode.

    ``sharded=True`` in a torchrun job: this rank gets only its share of the batches, and the
    caller must combine the ranks' results (``all_reduce_sums``, ``all_reduce_rows``).
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    batches = eval_batches([feature_length(f) for f in features], batch_size)
    plan = [EvalShard(b, True) for b in batches]
    if sharded:
        plan = shard_eval_batches(batches, rank(), world_size())
    try:
        with torch.no_grad():
            for shard in plan:
                idx = shard.indices
                batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
                out = model(**batch)  # padding batches too: FSDP gathers weights in every forward
                if shard.keep:
                    yield idx, batch, out
    finally:
        model.train(was_training)


def collate_for(model_inputs: set[str], pad_id: int, features: list[Feature]) -> dict[str, torch.Tensor]:
    batch = pad_features(features, pad_id)
    return {k: v for k, v in batch.items() if k in model_inputs}


def mean_loss(model: nn.Module, features: list[Feature], collate: Any, batch_size: int) -> float:
    """Loss averaged over target tokens (or examples), independent of batch composition."""
    total = weight = 0.0
    for _, batch, out in batched(model, features, collate, batch_size, sharded=True):
        labels = batch.get("labels")
        n = float((labels != -100).sum()) if labels is not None and labels.dim() > 1 else len(labels)
        total += float(out.loss) * n
        weight += n
    sums = all_reduce_sums({"total": total, "weight": weight}, model_device(model))
    return sums["total"] / max(sums["weight"], 1.0)


def normalise_labels(values: list[Any]) -> list[Any]:
    """Labels as ints when every value is an int or a digit string (TSV files give strings)."""

    def integral(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        return isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())

    if all(integral(v) for v in values):
        return [int(v) for v in values]
    return [str(v) for v in values]


def label_value(value: Any, field: str, source: str, index: int, strict: bool) -> Any:
    """A record's label, refusing (``strict``) an empty cell or a list / object where one label
    belongs; otherwise those become classes: '' and the value's JSON text."""
    if isinstance(value, str) and not value.strip():
        if strict:
            raise DataError(
                f"{source}, record {index + 1}: field {field!r} is empty; every record needs a label "
                "(data.strict_labels: false makes the empty label a class of its own)"
            )
        return value
    if isinstance(value, (list, dict)):
        if strict:
            kind = "a list" if isinstance(value, list) else "an object"
            shown = json.dumps(value, ensure_ascii=False)
            raise DataError(
                f"{source}, record {index + 1}: field {field!r} holds {kind} ({shown[:60]}), not one label "
                "(data.strict_labels: false makes each distinct value's JSON text a class)"
            )
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def label_index(label_map: dict[Any, int], value: Any, source: str, index: int) -> int:
    key = normalise_labels([value])[0]
    if key not in label_map:
        raise DataError(
            f"{source}, record {index + 1}: label {value!r} is not in the label map "
            f"{list(label_map)} (labels seen in training)"
        )
    return label_map[key]


def set_pad_token(tokenizer: Any) -> int:
    """Decoder-only tokenizers often lack a pad token; padding is masked, so eos serves."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise DataError("the tokenizer has neither a pad nor an eos token; cannot pad batches")
        tokenizer.pad_token = tokenizer.eos_token
    return int(tokenizer.pad_token_id)


def write_task_file(folder: Path, info: dict[str, Any]) -> None:
    atomic_write_text(folder / TASK_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_task_file(folder: Path) -> dict[str, Any]:
    path = folder / TASK_FILE
    if not path.is_file():
        raise AdapterFileError(f"{folder}: {TASK_FILE} not found (not an adapter written by lorakit train)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdapterFileError(f"{path}: invalid JSON ({e.msg})") from None
    if not isinstance(info, dict) or "task" not in info or "model" not in info:
        raise AdapterFileError(f"{path}: expected an object with 'task' and 'model'")
    return info


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    num_beams: int,
    batch_size: int,
) -> list[str]:
    """Greedy/beam generation for token-id prompts; returns the decoded continuations only."""
    device = model_device(model)
    decoder_only = not getattr(model.config, "is_encoder_decoder", False)
    pad_id = int(tokenizer.pad_token_id)
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for idx in eval_batches([len(p) for p in prompts], batch_size):
            feats: list[Feature] = [
                {"input_ids": prompts[i], "attention_mask": [1] * len(prompts[i])} for i in idx
            ]
            batch = pad_features(feats, pad_id, side="left" if decoder_only else "right")
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.no_grad():
                seqs = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    do_sample=False,
                    pad_token_id=pad_id,
                )
            if decoder_only:
                seqs = seqs[:, batch["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                out[i] = tokenizer.decode(seqs[row], skip_special_tokens=True).strip()
    finally:
        model.train(was_training)
    return out
