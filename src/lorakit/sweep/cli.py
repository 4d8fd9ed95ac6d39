"""``lorakit sweep``: argument parsing, early validation, running, reporting."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lorakit.errors import ConfigError
from lorakit.sweep.best_config import write_best_config
from lorakit.sweep.metrics import Direction
from lorakit.sweep.plots import write_plots
from lorakit.sweep.report import build_report, format_table, write_report
from lorakit.sweep.runner import SweepOptions, run_sweep
from lorakit.sweep.search import SEARCH_KINDS, PrunerSettings
from lorakit.sweep.space import Choice, GridSpecError, SearchSpace, format_value, parse_space
from lorakit.training.config import RunConfig
from lorakit.training.config_io import load_config
from lorakit.training.setup import metric_choice

DESCRIPTION = """\
Run `lorakit train` once per hyperparameter combination and report which one is best.

Each trial runs in its own subdirectory of --out, with the config's data and seed. Rerunning the
same command resumes: finished trials are skipped, interrupted ones restart. Trials that fall
behind the median of earlier trials at the same evaluation step are pruned (--no-prune to keep
all). Results: a table, sweep.csv, sweep.json, best_config.yaml and plots/ in --out.
"""

EPILOG = """\
--grid syntax (repeat per key):
  lora.r=4,8,16                        choices (int, float, true/false, null, strings)
  lora.targets=[query,value],[query,key,value]   list-valued choices
  train.lr=1e-5..1e-3:log              a range (random / tpe search only)

examples:
  lorakit sweep cfg.yaml --grid lora.r=4,8,16 --grid train.lr=1e-4,5e-4 --budget-steps 150
  lorakit sweep cfg.yaml --search tpe --trials 20 --grid lora.r=2,4,8,16 --grid train.lr=1e-5..1e-2:log
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="base run config (YAML), as for `lorakit train`")
    p.add_argument(
        "overrides", nargs="*", metavar="key.sub=value", help="fixed overrides applied to every trial"
    )
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=VALUES", help="a swept key (repeatable)"
    )
    p.add_argument("--search", choices=SEARCH_KINDS, default="grid", help="grid (default), random or tpe")
    p.add_argument("--trials", type=int, help="trials for random/tpe (default 10); caps a grid")
    p.add_argument("--budget-steps", type=int, help="optimizer steps per trial (sets train.max_steps)")
    p.add_argument("--parallel", type=int, default=1, help="trials run at once (default 1)")
    p.add_argument("--out", type=Path, help="sweep directory (default: <output_dir>-sweep)")
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    p.add_argument("--prune-startup", type=int, default=4, help="finished trials before pruning starts (4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random/tpe sampler (0)")


def build_parser(prog: str = "lorakit sweep") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return p


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    """Validate everything cheap before any trial starts; user mistakes raise LorakitError."""
    space = parse_space(args.grid)
    if args.search == "grid":
        space.grid()  # ranges are refused here, with the offending --grid named
    overrides = tuple(args.overrides)
    base = load_config(args.config, list(overrides))
    check_space(args.config, overrides, space)
    metric, greater = metric_choice(base)
    direction: Direction = "maximize" if greater else "minimize"
    if args.parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {args.parallel}")
    if args.prune_startup < 0:
        raise ConfigError(f"--prune-startup must be >= 0, got {args.prune_startup}")
    return SweepOptions(
        config=args.config,
        space=space,
        out_dir=args.out if args.out is not None else Path(f"{base.output_dir.rstrip('/')}-sweep"),
        metric=metric,
        direction=direction,
        overrides=overrides,
        search=args.search,
        trials=args.trials,
        budget_steps=args.budget_steps,
        parallel=args.parallel,
        pruner=PrunerSettings(enabled=not args.no_prune, startup_trials=args.prune_startup),
        seed=args.seed,
        cpu_threads=max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None,
    )


def check_space(config: Path, overrides: tuple[str, ...], space: SearchSpace) -> None:
    """Each swept value must give a valid run config; the error names the --grid spec."""
    for dim in space.dims:
        values = dim.values if isinstance(dim, Choice) else (dim.low, dim.high)
        for value in values:
            if not isinstance(dim, Choice) and dim.integer:
                value = int(value)
            try:
                cfg: RunConfig = load_config(config, [*overrides, f"{dim.key}={format_value(value)}"])
                metric_choice(cfg)
            except ConfigError as e:
                raise GridSpecError(
                    f"--grid {dim.key}: value {format_value(value)} is not valid: {e}"
                ) from None


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed arguments; returns the exit code."""
    opts = options_from_args(args)
    print(f"sweep: {opts.search} over {', '.join(opts.space.describe())} -> {opts.out_dir}", flush=True)
    try:
        state = run_sweep(opts, echo=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume (state in {opts.out_dir})", file=sys.stderr)
        return 130
    report = build_report(state, opts.space.keys, opts.metric, opts.direction)
    print()
    print(format_table(report))
    write_report(report, opts.out_dir)
    best = write_best_config(report, opts.out_dir, opts.config, opts.overrides, opts.budget_steps)
    plots = write_plots(report, opts.out_dir)
    print(f"\nwrote {opts.out_dir}/sweep.csv, sweep.json" + (f", {best.name}" if best else ""))
    for path in plots:
        print(f"wrote {path}")
    return 0 if report.best is not None else 1
