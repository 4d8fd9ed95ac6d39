"""Paths built from user input that must stay inside a chosen folder.

Every output lorakit writes under a run folder (checkpoints, adapters named by the user, logs)
goes through ``safe_child``, so a name such as ``../../etc`` or a symlink planted inside the
folder cannot redirect a write elsewhere. The checks are made before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorakit.errors import UnsafePathError

MAX_NAME = 255


def check_path_text(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, refusing NUL bytes and empty strings (the OS would misread them)."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise UnsafePathError(f"path {text!r} must be text, not {type(text).__name__}")
    if "\x00" in text:
        raise UnsafePathError(f"path {text!r} contains a NUL byte")
    if not text:
        raise UnsafePathError("path is empty")
    return Path(text)


def safe_name(name: str) -> str:
    """``name`` if it is one plain path component (no separator, NUL, ``.``/``..``, control chars)."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"name {name!r} must be a non-empty string")
    bad = [c for c in name if c in "/\\\x00" or ord(c) < 32]
    if bad or name in (".", "..") or len(name) > MAX_NAME:
        raise UnsafePathError(
            f"name {name!r} is not a single plain file name: no '/', '\\\\', NUL or control "
            f"characters, not '.' or '..', at most {MAX_NAME} characters"
        )
    return name


def safe_child(root: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """The real path of ``root/relative``, refused if it could lead outside ``root``.

    Refused: NUL bytes, absolute paths, any ``..`` component, an empty path, and paths whose
    existing part goes through a symlink that resolves outside ``root``. Symlinks that stay
    inside ``root`` are followed. ``root`` itself need not exist yet.
    """
    base = check_path_text(root)
    rel = check_path_text(relative)
    if rel.is_absolute():
        raise UnsafePathError(f"{os.fspath(relative)!r} is absolute; expected a path inside {base}")
    if ".." in rel.parts:
        raise UnsafePathError(f"{os.fspath(relative)!r} contains '..'; expected a path inside {base}")
    if not rel.parts:
        raise UnsafePathError(f"{os.fspath(relative)!r} names no file or folder inside {base}")
    real_root = base.resolve()
    real = (real_root / rel).resolve()
    if not real.is_relative_to(real_root) or real == real_root:
        raise UnsafePathError(
            f"{os.fspath(relative)!r} resolves to {real}, which is not inside {real_root} (symlink)"
        )
    return real


def check_write_target(folder: Path, target: Path) -> None:
    """Refuse to write ``target`` when it is a symlink that resolves outside ``folder``."""
    if target.is_symlink():
        real = target.resolve()
        if not real.is_relative_to(folder.resolve()):
            raise UnsafePathError(f"{target} is a symlink to {real}, outside {folder}: refusing to write")
