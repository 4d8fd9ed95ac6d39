"""Issue 12 item 11: a CSV saved with a byte-order mark reads; a null field is called null."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.data.readers import read_records, require_field
from lorakit.errors import DataError


def test_utf8_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("review,label\nCafé au lait,pos\n".encode("utf-8-sig"))
    assert read_records(path) == [{"review": "Café au lait", "label": "pos"}]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('{"review": "x", "label": "pos"}\n'.encode("utf-8-sig"))
    assert read_records(jsonl) == [{"review": "x", "label": "pos"}]


def test_null_field_is_named_null_not_missing() -> None:
    with pytest.raises(DataError) as caught:
        require_field({"review": None, "label": "pos"}, "review", "d.jsonl", 6)
    assert str(caught.value) == "d.jsonl, record 7: field 'review' is null (no value)"
    with pytest.raises(DataError, match=r"missing field 'text' \(fields present: \['label', 'review'\]\)"):
        require_field({"review": "x", "label": "pos"}, "text", "d.jsonl", 0)
