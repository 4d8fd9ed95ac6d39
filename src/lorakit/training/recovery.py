"""Tidying what a killed run left behind, before a new or resumed run writes anything.

Every file of a run is written to a temporary name and renamed into place (``atomic_write_*``:
``.NAME.XXXX.tmp``; the final adapter: ``.adapter.tmp``; checkpoints: see checkpoint.py). A
SIGKILL skips every ``finally``, so those temporaries can stay behind; nothing else can be half
written.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lorakit.training.checkpoint import recover_leftovers

TEMPORARY = re.compile(r"\..+\.tmp")
# Folders of a run that receive atomic writes (the output folder itself included).
WRITTEN_FOLDERS = ("", "best_adapter", "adapter")


def clean_leftovers(output_dir: Path) -> list[str]:
    """Remove temporaries of an interrupted run in ``output_dir``; returns their relative paths."""
    removed: list[str] = []
    for sub in WRITTEN_FOLDERS:
        folder = output_dir / sub
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if not TEMPORARY.fullmatch(child.name):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(str(child.relative_to(output_dir)))
    checkpoints = output_dir / "checkpoints"
    if checkpoints.is_dir():
        removed += [f"checkpoints/{name}" for name in recover_leftovers(checkpoints)]
    return removed
