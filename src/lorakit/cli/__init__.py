"""``lorakit`` command line: train, eval, predict, generate, merge, combine, inspect, sweep."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from lorakit.cli import combine, generate, inspect, merge, predict, serve, sweep, train
from lorakit.cli import eval as eval_cmd
from lorakit.errors import LorakitError, TrainingDiverged

COMMANDS = (train, eval_cmd, predict, generate, merge, combine, inspect, sweep, serve)
EPILOG = """examples:
  lorakit train examples/sst2_minilm.yaml train.max_steps=300 lora.r=4
  lorakit eval examples/sst2_minilm.yaml --split validation
  echo "a gripping, funny film" | lorakit predict examples/sst2_minilm.yaml --input -
  lorakit merge --adapter runs/sst2/adapter --out runs/sst2/merged
  lorakit combine --adapter runs/a/adapter=0.7 --adapter runs/b/adapter=0.3 --method svd --rank 8 \
      --base smollm2-135m --out runs/ab
  lorakit inspect minilm-l6 --targets query value
  lorakit sweep examples/sst2_rank_sweep.yaml --grid lora.r=4,8,16 --grid train.lr=5e-4,2e-3

Configs are YAML; `lorakit train --help` lists every key with its meaning.
User mistakes exit with code 2 and a one-line message; a diverged run (NaN loss) exits 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorakit",
        description="LoRA fine-tuning for Hugging Face transformers models: train, evaluate, "
        "predict, merge and inspect, offline-first and pleasant on a CPU.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from lorakit import __version__

    parser.add_argument("--version", action="version", version=f"lorakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def _quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 diverged run, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, and usage errors (argparse exits 2)
        return int(e.code or 0)
    _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except TrainingDiverged as e:
        print(f"lorakit {args.command}: training diverged: {e}", file=sys.stderr)
        return 1
    except LorakitError as e:
        print(f"lorakit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable/unwritable paths the user gave
        print(f"lorakit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lorakit {args.command}: interrupted", file=sys.stderr)
        return 130
