"""Every supported format reads to the same records; malformed input names file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.data.readers import read_records
from lorakit.data.splits import split_off
from lorakit.errors import DataError

ROWS = [{"text": "a b", "label": "x"}, {"text": "c, d", "label": "y"}]


def test_formats_agree(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    (tmp_path / "cols.json").write_text(json.dumps({"text": ["a b", "c, d"], "label": ["x", "y"]}))
    (tmp_path / "d.csv").write_text('text,label\na b,x\n"c, d",y\n')
    (tmp_path / "d.tsv").write_text("text\tlabel\na b\tx\nc, d\ty\n")
    for name in ("d.jsonl", "d.json", "cols.json", "d.csv", "d.tsv"):
        assert read_records(tmp_path / name) == ROWS, name


def test_parquet_and_saved_hf_dataset(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table, tmp_path / "d.parquet")
    assert read_records(tmp_path / "d.parquet") == ROWS
    folder = tmp_path / "hf"
    folder.mkdir()
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    assert read_records(folder) == ROWS


def test_conll(tmp_path: Path) -> None:
    p = tmp_path / "d.conll"
    p.write_text("-DOCSTART- O\n\nBob NNP B-PER\nruns VBZ O\n\nParis NNP B-LOC\n")
    assert read_records(p) == [
        {"tokens": ["Bob", "runs"], "tags": ["B-PER", "O"]},
        {"tokens": ["Paris"], "tags": ["B-LOC"]},
    ]


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad.jsonl", '{"a": 1}\n{"a": \n', "bad.jsonl, line 2: malformed JSON"),
        ("list.jsonl", '{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object"),
        ("bad.csv", "a,b\n1,2\n1,2,3\n", "bad.csv, line 3: 3 columns"),
        ("empty.jsonl", "\n\n", "empty"),
        ("bad.json", '[{"a": 1},', "bad.json, line 1"),
        ("d.xlsx", "x", "unsupported file type"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, needle: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=None) as info:
        read_records(tmp_path / name)
    assert needle in str(info.value)


def test_missing_file_and_non_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        read_records(tmp_path)


def test_split_by_group_keeps_groups_together() -> None:
    records = [{"mr": f"m{i % 40}", "ref": str(i)} for i in range(400)]
    train, val = split_off(records, 0.2, "mr", "src")
    assert {r["mr"] for r in train}.isdisjoint({r["mr"] for r in val})
    assert 0.05 < len(val) / len(records) < 0.4
    assert split_off(records, 0.2, "mr", "src") == (train, val)  # deterministic
