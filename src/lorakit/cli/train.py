"""``lorakit train CONFIG.yaml [key.sub=value ...]``."""

from __future__ import annotations

import argparse

from lorakit.cli.common import add_config_args
from lorakit.training.config_io import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a LoRA adapter from a YAML config",
        description="Train an adapter. Writes <output_dir>/adapter/, checkpoints/, metrics.jsonl, "
        "summary.json, config.yaml (resolved), tensorboard/ and plots/.",
    )
    add_config_args(p)
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in output_dir"
    )
    p.add_argument("--output-dir", metavar="DIR", help="shortcut for output_dir=DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.resume:
        config.resume = "auto"
    from lorakit.training.loop import train

    train(config)
    return 0
