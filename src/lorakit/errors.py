"""Error types. Every mistake a user can make surfaces as a subclass of ``LorakitError``."""

from __future__ import annotations

from typing import Protocol


class LorakitError(ValueError):
    """Base class for errors caused by user input: configs, targets, adapter files, paths."""


class ConfigError(LorakitError):
    """A configuration value is missing, of the wrong type, or out of range."""


class TargetError(LorakitError):
    """A target specification matched nothing, or matched a module type lorakit cannot adapt."""


class AdapterFileError(LorakitError):
    """An adapter directory is missing, corrupt, or does not fit the model it is loaded onto."""


class MergeError(LorakitError):
    """Merging was refused (non-finite delta, adapters disabled while merged, ...)."""


class UnsafePathError(LorakitError):
    """A path or name would reach outside its folder (``..``, absolute, NUL byte, symlink escape)."""


class UntrustedModelError(LorakitError):
    """A model folder could only be loaded by unpickling weights or running its own code."""


class DataError(LorakitError):
    """A data file is missing, malformed, empty, or lacks a field the task needs."""


class TrainingDiverged(LorakitError):
    """The loss became NaN or Inf; training stopped."""


class CheckpointError(LorakitError):
    """A checkpoint could not be written (disk full, ...); the previous one is left as it was."""


class MissingExtra(LorakitError):
    """A feature needs an optional package that is not installed (``pip install "lorakit[extra]"``)."""


class RunExistsError(LorakitError):
    """The output folder holds a run that a new run would overwrite."""


class InterruptReport(Protocol):
    command: str

    def describe(self) -> str: ...


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped ``lorakit train``; says what was kept and how to finish.

    A ``KeyboardInterrupt``, so library callers see an interrupt as before; the CLI prints
    ``str(e)`` and exits 130. ``report.command`` is the command line shown in the advice.
    """

    def __init__(self, report: InterruptReport) -> None:
        super().__init__()
        self.report = report

    def __str__(self) -> str:
        return self.report.describe()
