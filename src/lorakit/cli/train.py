"""``lorakit train CONFIG.yaml [key.sub=value ...]``."""

from __future__ import annotations

import argparse
import shlex
from typing import get_args

from lorakit.cli.common import add_config_args
from lorakit.distributed import exec_torchrun, launched_by_torchrun
from lorakit.errors import ConfigError, TrainingInterrupted
from lorakit.runconfig.yaml_io import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=config_reference(),
        help="fine-tune a LoRA adapter from a YAML config",
        description="Train an adapter. Writes <output_dir>/adapter/, best_adapter/, checkpoints/, "
        "metrics.jsonl, summary.json, config.yaml (resolved), tensorboard/ and plots/. A folder that "
        "already holds a run is refused unless --resume (continue it) or --overwrite (replace it). "
        "Relative paths in CONFIG (data files, a model folder) are read relative to the config file's "
        "folder; output_dir and paths given as key=value overrides are relative to the current "
        "directory. Overrides may come anywhere on the line.",
    )
    add_config_args(p)
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in output_dir"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="output_dir holds an earlier run: delete its outputs (adapter/, best_adapter/, checkpoints/, "
        "merged/, metrics, plots, TensorBoard events) and train from scratch. Without it (or --resume) "
        "a folder holding a run is refused",
    )
    p.add_argument("--output-dir", metavar="DIR", help="shortcut for output_dir=DIR")
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel processes on this machine: re-runs this command under "
        "`torchrun --standalone --nproc_per_node N` (several machines: call torchrun yourself)",
    )
    p.set_defaults(func=run)


def config_reference() -> str:
    """Every config key with its default and docstring, generated from the schema."""
    from pydantic import BaseModel

    from lorakit.runconfig.schema import RunConfig

    lines = ["config keys (YAML; override any of them as key.sub=value):"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            # Optional sections (quantize: QuantSection | None) list their keys too.
            section = [a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
            if section:
                doc = " ".join((field.description or "").split())
                lines.append(f"  {prefix}{name}: {doc}")
                walk(section[0], f"{prefix}{name}.")
                continue
            default = (
                "required"
                if field.is_required()
                else f"default {field.get_default(call_default_factory=True)!r}"
            )
            doc = " ".join((field.description or "").split())
            lines.append(f"  {prefix}{name} ({default}): {doc}")

    walk(RunConfig, "")
    return "\n".join(lines)


def torchrun_args(args: argparse.Namespace) -> list[str]:
    """This command line without --nproc, for the processes torchrun starts."""
    out = ["train", args.config, *args.overrides]
    if args.resume:
        out.append("--resume")
    if args.overwrite:
        out.append("--overwrite")
    if args.output_dir:
        out += ["--output-dir", args.output_dir]
    return out


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.resume:
        config.resume = "auto"
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be a number of processes >= 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and not launched_by_torchrun():
        exec_torchrun(args.nproc, torchrun_args(args))  # the config is valid: start the workers
    from lorakit.training.loop import train

    try:
        train(config, overwrite=args.overwrite)
    except TrainingInterrupted as e:
        e.report.command = shlex.join(["lorakit", *_without_run_mode(torchrun_args(args))])
        raise
    return 0


def _without_run_mode(argv: list[str]) -> list[str]:
    return [a for a in argv if a not in ("--resume", "--overwrite")]
