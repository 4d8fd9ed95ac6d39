"""Reading metrics.jsonl from a byte offset: only new complete lines, resets on replacement."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lorakit.ui.tail import read_since


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"step": i, "split": "train", "loss": 1.0 / (i + 1)} for i in range(start, start + n)]


def write(path: Path, items: list[dict], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in items))


def test_successive_reads_return_each_line_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write(path, rows(3))
    first = read_since(path, 0, "")
    assert first.rows == rows(3) and not first.reset
    assert first.offset == path.stat().st_size
    write(path, rows(2, start=3), mode="a")
    second = read_since(path, first.offset, first.file_id)
    assert second.rows == rows(2, start=3) and not second.reset
    assert read_since(path, second.offset, second.file_id).rows == []


def test_a_partial_last_line_waits_until_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write(path, rows(1))
    line = json.dumps(rows(1, start=1)[0])
    with open(path, "a") as f:
        f.write(line[:10])
    chunk = read_since(path, 0, "")
    assert chunk.rows == rows(1)
    assert chunk.offset == len(json.dumps(rows(1)[0])) + 1  # just after the complete line
    with open(path, "a") as f:
        f.write(line[10:] + "\n")
    assert read_since(path, chunk.offset, chunk.file_id).rows == rows(1, start=1)


def test_a_replaced_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    """A resumed run rewrites metrics.jsonl atomically (new inode), possibly shorter or longer."""
    path = tmp_path / "metrics.jsonl"
    write(path, rows(5))
    old = read_since(path, 0, "")
    new = tmp_path / "tmp"
    write(new, rows(6))  # longer than before: the offset alone would not notice
    os.replace(new, path)
    chunk = read_since(path, old.offset, old.file_id)
    assert chunk.reset and chunk.rows == rows(6)


def test_a_truncated_file_resets(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write(path, rows(5))
    old = read_since(path, 0, "")
    with open(path, "r+") as f:
        f.truncate(0)
    write(path, rows(1), mode="a")
    chunk = read_since(path, old.offset, old.file_id)
    assert chunk.reset and chunk.rows == rows(1)


def test_missing_file_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    missing = read_since(path, 0, "")
    assert missing.rows == [] and missing.file_id == "" and not missing.reset
    assert read_since(path, 10, "1-2").reset  # it existed before and is gone now
    path.write_text('{"step": 1, "loss": NaN}\nnot json\n[1, 2]\n{"step": 2, "loss": Infinity, "x": [NaN]}\n')
    assert read_since(path, 0, "").rows == [{"step": 1, "loss": None}, {"step": 2, "loss": None, "x": [None]}]


def test_large_files_come_in_pages_that_add_up(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write(path, rows(500))
    got, offset, ident, pages = [], 0, "", 0
    while True:
        chunk = read_since(path, offset, ident, max_bytes=4096)
        got += chunk.rows
        offset, ident, pages = chunk.offset, chunk.file_id, pages + 1
        assert len(json.dumps(chunk.rows)) < 2 * 4096
        if not chunk.more:
            break
    assert got == rows(500) and pages > 3


def test_symlinks_and_non_files_are_not_read(tmp_path: Path) -> None:
    """A link planted in a runs folder must not make the page serve a file from elsewhere."""
    secret = tmp_path / "secret.jsonl"
    write(secret, rows(2))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(secret)
    chunk = read_since(tmp_path / "run" / "metrics.jsonl", 0, "")
    assert chunk.rows == [] and chunk.file_id == ""
    (tmp_path / "dir.jsonl").mkdir()
    assert read_since(tmp_path / "dir.jsonl", 0, "").rows == []
