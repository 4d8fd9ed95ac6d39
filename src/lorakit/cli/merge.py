"""``lorakit merge --adapter DIR --out DIR [--dtype ...] [--requantize]``: a plain transformers model folder.

An adapter trained on a quantized base (config ``quantize:``) is merged into the float base it
was quantized from; ``--requantize`` then snaps the merged weights to the quantization grid and
reports the error that adds (see quantized_model/roundtrip.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorakit.cli.common import check_new_folder, staged_folder, utf8_text
from lorakit.errors import LorakitError, MergeError
from lorakit.model_sources import quiet_transformers
from lorakit.tasks.common import accepted_inputs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Largest max|merged - unmerged| logit difference a dtype explains, relative to max(1, max|logit|):
# float32 only reorders sums; half types round every weight and activation.
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-1, "float16": 2e-2}
SAMPLE_TEXTS = ("The quick brown fox jumps over the lazy dog.", "hello world", "a b c 1 2 3")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="merge an adapter into its base and write a plain transformers model folder",
        description="Writes config, safetensors weights and tokenizer to --out, loadable with "
        "AutoModel*.from_pretrained without lorakit. Before writing, merged and unmerged logits are "
        "compared on sample inputs; beyond what --dtype explains the merge is refused unless --force.",
    )
    p.add_argument("--adapter", required=True, metavar="DIR", help="adapter folder written by lorakit train")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    p.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="weight dtype of the merged model"
    )
    p.add_argument(
        "--sample-text",
        action="append",
        type=utf8_text,
        metavar="TEXT",
        help="text for the logit comparison (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="write even when the logit check fails")
    p.add_argument(
        "--requantize",
        nargs="?",
        const="run",
        choices=("run", "nf4", "int8"),
        help="after merging into the float base, round the weights to the quantization grid (the run's "
        "`quantize:` settings, or nf4/int8) and report the error; the folder stores them dequantized",
    )
    p.set_defaults(func=run)


def sample_batch(tokenizer: Any, texts: list[str], model: nn.Module) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt"))
    batch = {k: v for k, v in batch.items() if k in accepted_inputs(model)}
    if getattr(model.config, "is_encoder_decoder", False):
        start = model.config.decoder_start_token_id
        start = start if start is not None else tokenizer.pad_token_id
        dec = batch["input_ids"][:, :4].clone()
        dec[:, 0] = start
        batch["decoder_input_ids"] = dec
    return batch


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    mask = batch.get("attention_mask")
    values = out.logits.float()
    if values.dim() == 3 and mask is not None and values.shape[1] == mask.shape[1]:
        values = values[mask.bool()]  # padded positions carry no meaning
    return values


def compare(reference: torch.Tensor, other: torch.Tensor, dtype: str) -> tuple[float, float, float, bool]:
    diff = float((reference - other).abs().max())
    tol = TOLERANCE[dtype] * max(1.0, float(reference.abs().max()))
    top1 = float((reference.argmax(-1) == other.argmax(-1)).float().mean())
    return diff, tol, top1, diff <= tol


def requantize(merged: nn.Module, task: Any, config: Any, method: str, batch: dict) -> torch.Tensor:
    """Snap ``merged``'s weights to the quantization grid, report the error; returns the new logits."""
    from lorakit.quantized_model.roundtrip import requantize_in_place
    from lorakit.runconfig.schema import QuantSection

    if method == "run" and config.quantize is None:
        raise LorakitError("--requantize: this run was not trained with `quantize:`; use --requantize nf4")
    section = config.quantize if method == "run" else QuantSection(method=method)
    before = logits(merged, batch)
    errors = requantize_in_place(merged, section.to_quant_config(task.head_modules(merged)))
    after = logits(merged, batch)
    mean = sum(errors.values()) / max(1, len(errors))
    print(
        f"re-quantized {len(errors)} weights ({section.method}): relative weight error "
        f"mean {mean:.3e}, max {max(errors.values(), default=0.0):.3e}; "
        f"max |logit diff| vs the float merge {float((after - before).abs().max()):.3e}",
        file=sys.stderr,
    )
    return after


def run(args: argparse.Namespace) -> int:
    from lorakit.merging import merge_and_unload
    from lorakit.training.setup import load_for_inference

    out = Path(args.out)
    check_new_folder(out)
    folder = Path(args.adapter)
    task, model, config = load_for_inference(None, folder, quantized=False)
    if config.quantize is not None:
        print(
            f"the adapter was trained on a {config.quantize.method}-quantized base; "
            "merging into the float base it was quantized from",
            file=sys.stderr,
        )
    model = model.float().cpu()
    tokenizer = task.tokenizer
    batch = sample_batch(tokenizer, list(args.sample_text or SAMPLE_TEXTS), model)
    reference = logits(model, batch)
    merged = merge_and_unload(model)
    checks = [("float32", *compare(reference, logits(merged, batch), "float32"))]
    if args.requantize:
        reference = requantize(merged, task, config, args.requantize, batch)  # what --dtype is checked on
    if args.dtype != "float32":
        merged = merged.to(DTYPES[args.dtype])
        checks.append((args.dtype, *compare(reference, logits(merged, batch), args.dtype)))
    ok = True
    for name, diff, tol, top1, passed in checks:
        ok &= passed
        print(
            f"merged ({name}) vs adapter model (float32): max |logit diff| = {diff:.3e} "
            f"(tolerance {tol:.1e}), top-1 agreement {top1:.1%}",
            file=sys.stderr,
        )
    if not ok and not args.force:
        raise MergeError(
            "merged logits differ from the adapter model beyond the dtype tolerance; "
            "nothing written (pass --force to write anyway)"
        )
    with staged_folder(out) as tmp, quiet_transformers():
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    print(f"wrote merged model to {out} ({args.dtype})", file=sys.stderr)
    return 0
