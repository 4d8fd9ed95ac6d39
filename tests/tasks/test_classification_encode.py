"""Classification preprocessing: text pairs, int/str labels, label map errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.errors import DataError
from lorakit.model_sources import ModelRef, load_tokenizer
from lorakit.runconfig.yaml_io import validate_config
from lorakit.tasks.classification import ClassificationTask, labels_from_records, macro_f1
from tiny_assets import make_tokenizer


@pytest.fixture
def tokenizer(tmp_path: Path):
    make_tokenizer(tmp_path, "bert")
    return load_tokenizer(ModelRef(str(tmp_path), str(tmp_path)))


def test_text_pair_uses_second_segment(tokenizer) -> None:
    cfg = validate_config({"model": "x", "task": "classification", "data": {"text_pair_field": "b"}})
    task = ClassificationTask(cfg, ModelRef("x", "x"), tokenizer, [0, 1])
    [f] = task.encode([{"text": "the film", "b": "was good", "label": "1"}], "src")
    assert f["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]  # [CLS] the film [SEP] was good [SEP]
    assert f["labels"] == 1


def test_labels_are_ints_when_all_numeric() -> None:
    assert labels_from_records([{"l": "1"}, {"l": "0"}, {"l": 1}], "l", "src") == [0, 1]
    assert labels_from_records([{"l": "pos"}, {"l": "neg"}], "l", "src") == ["neg", "pos"]
    with pytest.raises(DataError, match="1 distinct label"):
        labels_from_records([{"l": "pos"}], "l", "src")


def test_unknown_label_named(tokenizer) -> None:
    cfg = validate_config({"model": "x", "task": "classification"})
    task = ClassificationTask(cfg, ModelRef("x", "x"), tokenizer, ["neg", "pos"])
    with pytest.raises(DataError, match=r"dev.jsonl, record 2: label 'meh' is not in the label map"):
        task.encode([{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}], "dev.jsonl")


def test_macro_f1() -> None:
    import torch

    pred, gold = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    # class 0: tp1 fp1 fn0 -> 2/3 ; class 1: tp2 fp0 fn1 -> 0.8
    assert macro_f1(pred, gold) == pytest.approx((2 / 3 + 0.8) / 2)
