"""Where a shared sweep's Optuna study lives: a journal file or a database (``--storage``)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from lorakit.errors import ConfigError

JOURNAL_SUFFIX = ".journal"
STORAGE_HELP = (
    "a path ending in .journal (a journal file on a file system every worker sees) or a database "
    "URL: sqlite:///sweep.db (one machine), postgresql://user@host/db (many)"
)
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def masked(where: str) -> str:
    """``where`` with any password in a database URL replaced by ***, for files and messages."""
    return _PASSWORD.sub(r"\1***@", where)


def open_storage(where: str, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """The Optuna storage named by ``--storage``; ConfigError says what is wrong with it.
    ``must_exist``: refuse a journal file that is not there yet, rather than create it."""
    if where.endswith(JOURNAL_SUFFIX) and "://" not in where:
        if must_exist and not Path(where).is_file():
            raise ConfigError(f"--storage {where}: no such journal file")
        return _journal(Path(where))
    if re.match(r"[a-z][a-z0-9+]*://", where):
        return _database(where)
    raise ConfigError(f"--storage {masked(where)!r} is not understood: expected {STORAGE_HELP}")


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def _journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path.parent.is_dir():
        raise ConfigError(f"--storage {path}: folder {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"--storage {path}: not a file")
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--storage {path}: cannot open the journal ({e})") from None


def _database(url: str) -> optuna.storages.BaseStorage:
    # Many workers write at once: wait for SQLite's lock rather than fail at once.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as e:
        raise ConfigError(
            f"--storage {masked(url)}: the database driver is not installed ({e}); for PostgreSQL "
            "install psycopg2-binary"
        ) from None
    except Exception as e:  # SQLAlchemy's errors: bad URL, no server, no permission, ...
        raise ConfigError(f"--storage {masked(url)}: cannot open the database ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
