"""``lorakit eval CONFIG.yaml [--adapter DIR] [--split validation|test|PATH]``."""

from __future__ import annotations

import argparse
import sys

from lorakit.cli.common import adapter_dir, add_config_args, config_from_args, print_json
from lorakit.metrics import format_metrics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained adapter (or the base model) on a split or file",
        description="Evaluate and print the metrics as a table (stderr) and one JSON line (stdout).",
    )
    add_config_args(p)
    p.add_argument("--adapter", metavar="DIR", help="adapter folder (default: <output_dir>/adapter)")
    p.add_argument(
        "--split",
        default="validation",
        metavar="validation|test|train|PATH",
        help="split named in the config, or a data file (default: validation)",
    )
    p.add_argument(
        "--base",
        action="store_true",
        help="evaluate the base model without the adapter (label map taken from --adapter or the train data)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorakit.data.splits import resolve_split
    from lorakit.training.evaluation import base_for_inference
    from lorakit.training.setup import load_for_inference

    config = config_from_args(args)
    records, source = resolve_split(config.data, args.split)
    if args.base:
        task, model = base_for_inference(config)
        label = "base model"
    else:
        folder = adapter_dir(args, config)
        task, model, config = load_for_inference(config, folder)
        label = str(folder)
    features = task.encode(records, source)
    metrics = task.evaluate(model, records, features)
    title = f"eval {args.split} ({label}, {len(records)} examples)"
    print(format_metrics(title, metrics), file=sys.stderr)
    print_json({"split": args.split, "examples": len(records), **metrics})
    return 0
