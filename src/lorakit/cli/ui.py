"""``lorakit ui --runs DIR``: the web page for runs and sweeps, without a model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lorakit.errors import LorakitError

DESCRIPTION = """\
Serve the lorakit web page for the run folders under --runs: status, numbers and live loss /
metric curves of every run, overlays and config diffs of several runs, sweep tables and plots.
No model is loaded (the page's compare view says so); `lorakit serve` serves the same page next
to a model. Needs the serve extra: pip install "lorakit[serve]"."""

EXTRA_HINT = 'the web page needs FastAPI and uvicorn: pip install "lorakit[serve]"'


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="web page for runs and sweeps: live curves, overlays, config diffs (no model)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--runs", type=Path, default=Path("runs"), metavar="DIR", help="runs folder (default runs/)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on /api/ (default: $LORAKIT_API_KEY, else none)",
    )
    p.set_defaults(func=run)


def build_app(runs: Path, api_key: str | None) -> Any:
    """The FastAPI app of ``lorakit ui``: the page and its /api/ routes, nothing else."""
    try:
        from fastapi import FastAPI

        from lorakit.ui import mount_ui
    except ImportError as e:
        raise LorakitError(f"{EXTRA_HINT} ({e})") from e
    app = FastAPI(title="lorakit ui", docs_url=None, redoc_url=None, openapi_url=None)
    mount_ui(app, runs, api_key)
    return app


def run(args: argparse.Namespace) -> int:
    if not args.runs.is_dir():
        raise LorakitError(f"--runs {args.runs}: not a folder (train a run first, or point at one)")
    if not 0 < args.port < 65536:
        raise LorakitError(f"--port {args.port}: must be between 1 and 65535")
    api_key = args.api_key or os.environ.get("LORAKIT_API_KEY") or None
    app = build_app(args.runs.resolve(), api_key)
    try:
        import uvicorn
    except ImportError as e:
        raise LorakitError(f"{EXTRA_HINT} ({e})") from e
    print(f"lorakit ui: http://{args.host}:{args.port}/  (runs: {args.runs})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
