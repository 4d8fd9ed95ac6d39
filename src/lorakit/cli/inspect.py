"""``lorakit inspect MODEL``: module tree, target hits, trainable parameters, memory estimate."""

from __future__ import annotations

import argparse
import re
from typing import Any

from torch import nn

AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "token_classification": "AutoModelForTokenClassification",
    "causal_lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "encoder": "AutoModel",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show a model's modules, which ones a target spec hits, and a memory estimate",
        description="Loads MODEL (alias, folder, .gguf or hub id) and prints its module tree with "
        "LoRA target hits marked, the trainable-parameter count and an estimate of training memory.",
    )
    p.add_argument(
        "model", metavar="MODEL", help="alias (minilm-l6, smollm2-135m), model folder, .gguf file or hub id"
    )
    p.add_argument(
        "--targets",
        nargs="+",
        default=None,
        metavar="NAME",
        help='target modules (names, one regex, or "all-linear"; default all-linear)',
    )
    p.add_argument("--r", type=int, default=8, help="LoRA rank for the counts (default 8)")
    p.add_argument(
        "--task", choices=["auto", *AUTO_CLASSES], default="auto", help="which head to load (default: guess)"
    )
    p.add_argument("--num-labels", type=int, default=2, help="head size for classification tasks")
    p.add_argument("--batch-size", type=int, default=16, help="for the memory estimate")
    p.add_argument("--max-length", type=int, default=128, help="sequence length for the memory estimate")
    p.add_argument(
        "--depth",
        type=int,
        default=5,
        help="deepest tree level shown (default 5); branches holding LoRA targets are always opened",
    )
    p.set_defaults(func=run)


def _targets(spec: list[str] | None) -> list[str] | str:
    if not spec:
        return "all-linear"
    return (
        spec[0]
        if len(spec) == 1 and (spec[0] == "all-linear" or re.search(r"[\\^$*+?()\[\]|]", spec[0]))
        else spec
    )


def module_tree(model: nn.Module, hits: set[str], depth: int) -> list[str]:
    """One line per module; repeated numbered blocks after the first are collapsed."""
    lines: list[str] = []

    def visit(module: nn.Module, name: str, level: int) -> None:
        children = list(module.named_children())
        numbered = [c for c in children if c[0].isdigit()]
        for child_name, child in children:
            full = f"{name}.{child_name}" if name else child_name
            if numbered and child_name.isdigit() and child is not numbered[0][1]:
                if child is numbered[1][1]:
                    n_hits = sum(
                        1 for h in hits if h.startswith(f"{name}.") and not h.startswith(f"{name}.0.")
                    )
                    lines.append(
                        f"{'  ' * level}{name}.1..{len(numbered) - 1}: {len(numbered) - 1} more blocks "
                        f"like {name}.0 ({n_hits} target hits)"
                    )
                continue
            params = sum(p.numel() for p in child.parameters())
            mark = "   <-- LoRA target" if full in hits else ""
            lines.append(f"{'  ' * level}{child_name} ({type(child).__name__}, {params:,} params){mark}")
            # Below --depth only the branches that lead to a target are opened, so every hit shows.
            if level + 1 < depth or any(h.startswith(f"{full}.") for h in hits):
                visit(child, full, level + 1)

    visit(model, "", 0)
    return lines


def memory_estimate(model: nn.Module, trainable: int, total: int, batch: int, seq: int) -> dict[str, float]:
    """Rough training memory in MiB (fp32 weights, AdamW on trainable params, activations)."""
    cfg: Any = model.config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or getattr(cfg, "d_model", 512)
    layers = (
        getattr(cfg, "num_hidden_layers", None)
        or getattr(cfg, "n_layer", None)
        or getattr(cfg, "num_layers", 1)
    )
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or 8
    mib = 2**20
    weights = total * 4 / mib
    optim = trainable * (4 + 8) / mib  # gradient + two Adam moments
    # Korthikanti et al. (2022): activations per layer ~ s*b*h*(34 + 5*a*s/h) bytes at 16-bit.
    per_layer = seq * batch * hidden * (34 + 5 * heads * seq / hidden) * 2
    activations = per_layer * layers / mib
    checkpointed = (seq * batch * hidden * 4 * layers + per_layer) / mib
    return {
        "weights": weights,
        "grads_and_adam": optim,
        "activations": activations,
        "activations_with_gradient_checkpointing": checkpointed,
        "total": weights + optim + activations,
    }


def run(args: argparse.Namespace) -> int:
    import transformers

    from lorakit.config import LoraConfig
    from lorakit.model import inject
    from lorakit.model_sources import load_pretrained, model_kind, resolve_model
    from lorakit.summary import trainable_summary
    from lorakit.targeting import find_targets
    from lorakit.tasks.classification import head_modules

    ref = resolve_model(args.model)
    task = model_kind(ref) if args.task == "auto" else args.task
    auto = getattr(transformers, AUTO_CLASSES[task])
    extra = {"num_labels": args.num_labels} if task in ("classification", "token_classification") else {}
    model = load_pretrained(ref, auto, **extra)
    cfg = LoraConfig(
        r=args.r,
        alpha=2 * args.r,
        targets=_targets(args.targets),
        modules_to_save=head_modules(model) if extra else [],
    )
    targets = find_targets(model, cfg)
    print(f"{ref.name}: {type(model).__name__} (loaded as {AUTO_CLASSES[task]})")
    print("\n".join(module_tree(model, {t.name for t in targets}, args.depth)))
    print(f"\nLoRA r={args.r} on {len(targets)} modules, e.g. {', '.join(t.name for t in targets[:4])}")
    inject(model, cfg)
    s = trainable_summary(model)
    print(f"trainable params: {s.trainable:,} || all params: {s.total:,} || trainable%: {s.percent:.4f}")
    est = memory_estimate(model, s.trainable, s.total, args.batch_size, args.max_length)
    print(f"\nestimated training memory (batch {args.batch_size} x {args.max_length} tokens, fp32 weights):")
    for key, value in est.items():
        print(f"  {key:<42} {value:>10.1f} MiB")
    return 0
