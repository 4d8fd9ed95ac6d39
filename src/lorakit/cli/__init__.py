"""``lorakit`` command line: train, eval, predict, generate, merge, combine, inspect, sweep, models.

Each command is a module ``lorakit.cli.<name>`` with ``register(subparsers)``; registering one is
a line in ``COMMANDS``. A command module imports only what its options need, so ``lorakit --help``
and every command work with no extras installed; one that still fails to import for want of an
optional package is listed, and running it names the extra to install (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from lorakit.errors import LorakitError, MissingExtra, TrainingDiverged
from lorakit.extras import missing_message

COMMANDS = (
    "train",
    "eval",
    "predict",
    "generate",
    "merge",
    "combine",
    "inspect",
    "sweep",
    "models",
    "serve",
    "ui",
)
EPILOG = """examples:
  lorakit train examples/sst2_minilm.yaml train.max_steps=300 lora.r=4
  lorakit eval examples/sst2_minilm.yaml --split validation
  echo "a gripping, funny film" | lorakit predict examples/sst2_minilm.yaml --input -
  lorakit merge --adapter runs/sst2/adapter --out runs/sst2/merged
  lorakit combine --adapter runs/a/adapter=0.7 --adapter runs/b/adapter=0.3 --method svd --rank 8 \
      --base smollm2-135m --out runs/ab
  lorakit inspect minilm-l6 --targets query value
  lorakit sweep examples/sst2_rank_sweep.yaml --grid lora.r=4,8,16 --grid train.lr=5e-4,2e-3
  lorakit models install minilm-l6 smollm2-135m

Configs are YAML; `lorakit train --help` lists every key with its meaning. Relative data paths
in a config are read relative to the config file's folder; key.sub=value overrides may come
anywhere on the line and their paths are relative to the current directory.
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
    for name in COMMANDS:
        register_command(sub, name)
    return parser


def register_command(sub: argparse._SubParsersAction, name: str) -> None:
    """Add ``lorakit <name>``; a command whose module needs a missing package still shows up."""
    try:
        module = importlib.import_module(f"lorakit.cli.{name}")
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] in ("lorakit", "torch", "transformers"):
            raise
        message = missing_message(e.name, f"lorakit {name}")
        p = sub.add_parser(name, help=f"(unavailable: {message})", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_unavailable(message))
        return
    module.register(sub)


def _unavailable(message: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise MissingExtra(message)

    return run


class _StderrNotes(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per message, not kept)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"lorakit: {record.getMessage()}", file=sys.stderr, flush=True)


def _show_progress_notes() -> None:
    """lorakit's own INFO notes (what is loading, how much data was kept) go to stderr."""
    logger = logging.getLogger("lorakit")
    if not any(isinstance(h, _StderrNotes) for h in logger.handlers):
        logger.addHandler(_StderrNotes())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.propagate = False


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``key.sub=value`` overrides are accepted anywhere on the line.

    argparse stops filling a positional list at the first option, so overrides after
    ``--resume`` or ``--output-dir X`` come back unrecognised; they join the command's overrides
    in the order given. Anything else unrecognised is a usage error of that command (exit 2).
    """
    args, rest = parser.parse_known_args(argv)
    if not rest:
        return args
    command_parser = _subparser(parser, args.command)
    unknown = [a for a in rest if not _is_override(a)]
    if unknown or not hasattr(args, "overrides"):
        command_parser.error(f"unrecognized arguments: {' '.join(unknown or rest)}")
    if getattr(args, "config", "") is None:
        command_parser.error(f"overrides ({' '.join(rest)}) need a CONFIG.yaml")
    args.overrides = [*(args.overrides or []), *rest]
    return args


def _is_override(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep) and not arg.startswith("-") and bool(key) and " " not in key


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
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
        args = parse_command_line(parser, argv)
    except SystemExit as e:  # --help, --version, and usage errors (argparse exits 2)
        return int(e.code or 0)
    _quiet_libraries()
    _show_progress_notes()
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
    except KeyboardInterrupt as e:
        detail = f" {e}" if str(e) else ""  # TrainingInterrupted says what was kept, how to go on
        print(f"lorakit {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
