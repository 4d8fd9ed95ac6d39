"""What ``lorakit sweep`` does with its parsed arguments: validate early, run, report."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lorakit.errors import ConfigError
from lorakit.extras import available, missing_message
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import load_config
from lorakit.sweep.best_config import write_best_config
from lorakit.sweep.metrics import Direction
from lorakit.sweep.options import SweepOptions
from lorakit.sweep.report import build_report, format_table, write_report
from lorakit.sweep.runner import SweepRunner, open_ledger
from lorakit.sweep.search import PrunerSettings
from lorakit.sweep.space import Choice, GridSpecError, SearchSpace, format_value, parse_space
from lorakit.sweep.state import SweepState
from lorakit.sweep.storage import masked
from lorakit.training.setup import metric_choice


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    """Validate everything cheap before any trial starts; user mistakes raise LorakitError."""
    space = parse_space(args.grid)
    if args.search == "grid":
        space.grid()  # ranges are refused here, with the offending --grid named
    config, overrides = Path(args.config), tuple(args.overrides)
    base = load_config(config, list(overrides))
    check_space(config, overrides, space)
    metric, greater = metric_choice(base)
    direction: Direction = "maximize" if greater else "minimize"
    if args.parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {args.parallel}")
    if args.study is not None and args.storage is None:
        raise ConfigError("--study names a study in shared storage: give --storage too")
    if args.prune_startup < 0:
        raise ConfigError(f"--prune-startup must be >= 0, got {args.prune_startup}")
    return SweepOptions(
        config=config,
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
        retry_failed=args.retry_failed,
        storage=args.storage,
        study_name=args.study,
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


def run_from_args(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed arguments (or, with --report, report it); the exit code."""
    opts = options_from_args(args)
    if args.report:
        return report_sweep(opts)
    return run_options(opts)


def run_options(opts: SweepOptions) -> int:
    """Run (this process's share of) a sweep, then report it; returns the exit code."""
    where = f" (shared: study {opts.study} in {masked(opts.storage)})" if opts.storage else ""
    over = ", ".join(opts.space.describe())
    print(f"sweep: {opts.search} over {over} -> {opts.out_dir}{where}", flush=True)
    start = time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            runner = SweepRunner(opts, echo=lambda s: print(s, flush=True))
            state = runner.run()
    except KeyboardInterrupt:
        again = "; its running trials go back to the shared queue" if opts.storage else ""
        print(
            f"\ninterrupted: rerun the same command to resume (state in {opts.out_dir}){again}",
            file=sys.stderr,
        )
        return 130
    print(f"sweep wall time {time.perf_counter() - start:.1f}s", flush=True)
    return _report(opts, state, runner.ledger.unfinished(), write=runner.ledger.unfinished() == 0)


def report_sweep(opts: SweepOptions) -> int:
    """``--report``: the table and report files of the sweep as it stands; runs nothing."""
    ledger = open_ledger(opts, echo=print, report_only=True)
    return _report(opts, ledger.snapshot(), ledger.unfinished(), write=True)


def _report(opts: SweepOptions, state: SweepState, unfinished: int, write: bool) -> int:
    report = build_report(state, opts.space.keys, opts.metric, opts.direction)
    print()
    print(format_table(report))
    if unfinished:
        print(f"\n{unfinished} trial(s) of the sweep still waiting or running (in other workers)")
    if not write:
        print(
            "report files are written by the worker that ends the last trial "
            "(or now, by rerunning this command with --report)"
        )
        return 0
    write_report(report, opts.out_dir)
    best = write_best_config(report, opts.out_dir, opts.config, opts.overrides, opts.budget_steps)
    plots: list[Path] = []
    if available("matplotlib"):
        from lorakit.sweep.plots import write_plots

        plots = write_plots(report, opts.out_dir)
    else:
        print(f"no plots: {missing_message('matplotlib')}")
    print(f"\nwrote {opts.out_dir}/sweep.csv, sweep.json" + (f", {best.name}" if best else ""))
    for path in plots:
        print(f"wrote {path}")
    return 0 if report.best is not None else 1


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the sweep like Ctrl-C: running trials are stopped and stay resumable."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
