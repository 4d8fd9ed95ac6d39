"""Optional features and the extras that install them.

``pip install lorakit`` gives a working CLI and library for training and inference; each extra
adds one feature. A feature whose package is missing raises ``MissingExtra`` naming the extra to
install (the CLI prints it and exits 2). ``train`` installs every training extra at once.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from lorakit.errors import MissingExtra


@dataclass(frozen=True)
class Extra:
    name: str
    """The name in ``pip install "lorakit[name]"``."""
    module: str
    """The module whose presence makes the feature available."""
    enables: str
    """What the user gets, for messages."""


EXTRAS = {
    e.module: e
    for e in (
        Extra("sweep", "optuna", "`lorakit sweep` (hyperparameter search)"),
        Extra("plots", "matplotlib", "PNG plots of runs and sweeps"),
        Extra("metrics", "sacrebleu", "BLEU and chrF scores (generation evaluation)"),
        Extra("metrics", "seqeval", "entity scores (token_classification evaluation)"),
        Extra("metrics", "rouge_score", "ROUGE-L scores (generation evaluation)"),
        Extra("tensorboard", "tensorboard", "TensorBoard event files"),
        Extra("gguf", "gguf", "loading .gguf models (e.g. the smollm2-135m alias)"),
        Extra("parquet", "pyarrow", "reading .parquet files and saved Hugging Face datasets folders"),
        Extra("serve", "fastapi", "`lorakit serve` and `lorakit ui` (HTTP server and web page)"),
        Extra("serve", "uvicorn", "`lorakit serve` and `lorakit ui` (HTTP server and web page)"),
        Extra("serve", "prometheus_client", "the /metrics endpoint of `lorakit serve`"),
    )
}
UMBRELLA = "train"
"""The extra that installs every training extra above (all but serve)."""
UMBRELLA_PARTS = frozenset({"sweep", "plots", "metrics", "tensorboard", "gguf", "parquet"})


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(module: str) -> str:
    """``pip install "lorakit[extra]"`` for an optional module, else ``pip install module``."""
    extra = EXTRAS.get(module.split(".")[0])
    if extra is None:
        return f"pip install {module.split('.')[0]}"
    if extra.name not in UMBRELLA_PARTS:
        return f'pip install "lorakit[{extra.name}]"'
    return f'pip install "lorakit[{extra.name}]" (or "lorakit[{UMBRELLA}]" for every training extra)'


def missing_message(module: str, feature: str | None = None) -> str:
    extra = EXTRAS.get(module.split(".")[0])
    what = feature or (extra.enables if extra else "this feature")
    return (
        f"{what} needs the package {module.split('.')[0]!r}, which is not installed: {install_hint(module)}"
    )


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming the extra that provides it."""
    if not available(module.split(".")[0]):
        raise MissingExtra(missing_message(module, feature))
    return importlib.import_module(module)


def check(module: str, feature: str | None = None) -> None:
    """Raise ``MissingExtra`` now (before heavy work) when ``module`` is not installed."""
    if not available(module.split(".")[0]):
        raise MissingExtra(missing_message(module, feature))
