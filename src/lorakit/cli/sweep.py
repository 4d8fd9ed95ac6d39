"""``lorakit sweep CONFIG.yaml --grid KEY=VALUES ...``: hyperparameter search over ``lorakit train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorakit.cli.common import add_config_args
from lorakit.extras import check
from lorakit.sweep.space import SEARCH_KINDS

DESCRIPTION = """\
Run `lorakit train` once per hyperparameter combination and report which one is best.

Each trial runs as its own process in a subdirectory of --out, with the config's data and seed,
evaluated on the validation split. Rerunning the same command resumes: finished trials are
skipped, interrupted ones restart in a fresh directory. A trial whose validation metric falls below
the median of earlier trials at the same evaluation step is stopped early (--no-prune keeps all).
Results in --out: a table, sweep.csv, sweep.json, best_config.yaml and plots/."""

EPILOG = """\
--grid syntax (one per key):
  lora.r=4,8,16                                  choices: ints, floats, true/false, null, strings
  lora.targets=[query,value],[query,key,value]   list-valued choices
  train.lr=1e-5..1e-3:log                        a range (random / tpe search only)

examples:
  lorakit sweep examples/sst2_rank_sweep.yaml --grid lora.r=4,8,16 --grid train.lr=5e-4,2e-3 --parallel 2
  lorakit sweep examples/sst2_rank_sweep.yaml --grid lora.r=1,2,4 --budget-steps 50 --out runs/quick
  lorakit sweep cfg.yaml --search tpe --trials 20 --grid lora.r=2,4,8,16 --grid train.lr=1e-5..1e-2:log

Exit status: 0 when a trial completed, 1 when none did, 2 for a usage mistake, 130 when
interrupted (rerun to resume)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="search LoRA rank / learning rate / ... over several training runs, with a report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=VALUES", help="a swept key (repeatable)"
    )
    p.add_argument("--search", choices=SEARCH_KINDS, default="grid", help="grid (default), random or tpe")
    p.add_argument(
        "--trials", type=int, metavar="N", help="number of trials for random/tpe (default 10); caps a grid"
    )
    p.add_argument(
        "--budget-steps", type=int, metavar="N", help="optimizer steps per trial (sets train.max_steps)"
    )
    p.add_argument("--parallel", type=int, default=1, metavar="K", help="trials run at once (default 1)")
    p.add_argument("--out", type=Path, metavar="DIR", help="sweep directory (default: <output_dir>-sweep)")
    p.add_argument("--retry-failed", action="store_true", help="rerun trials that failed in an earlier run")
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    p.add_argument(
        "--prune-startup",
        type=int,
        default=4,
        metavar="N",
        help="finished trials before pruning starts (default 4)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random / tpe sampler (default 0)")
    p.add_argument(
        "--storage",
        metavar="WHERE",
        help="keep the sweep in shared Optuna storage, so the same command started on several "
        "machines runs disjoint trials of one sweep: a path ending in .journal (a file every "
        "machine sees) or a database URL (sqlite:///sweep.db, postgresql://user@host/db)",
    )
    p.add_argument(
        "--study", metavar="NAME", help="study name in --storage (default: the name of the --out folder)"
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing: print the table and write the report files of the sweep as it stands",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check("optuna", "lorakit sweep")
    from lorakit.sweep.command import run_from_args

    return run_from_args(args)
