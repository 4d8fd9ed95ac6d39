"""Prompt tokens are masked; chat templates are used when present; packing keeps every label."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.model_sources import ModelRef, load_tokenizer
from lorakit.runconfig.yaml_io import validate_config
from lorakit.tasks.causal_lm import IGNORE, CausalLMTask, pack
from tiny_assets import make_tokenizer

TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


@pytest.fixture
def tokenizer(tmp_path: Path):
    make_tokenizer(tmp_path, "llama")
    return load_tokenizer(ModelRef(str(tmp_path), str(tmp_path)))


def _task(tokenizer, **data) -> CausalLMTask:
    cfg = validate_config({"model": "x", "task": "causal_lm", "data": data})
    return CausalLMTask(cfg, ModelRef("x", "x"), tokenizer)


def test_prompt_masked_response_learned(tokenizer) -> None:
    task = _task(tokenizer)
    [f] = task.encode([{"prompt": "question : two ?", "response": "answer deux"}], "src")
    ids, labels = f["input_ids"], f["labels"]
    n_prompt = len(task.prompt_ids("question : two ?"))
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True).strip() == "answer deux"
    assert ids[-1] == tokenizer.eos_token_id


def test_chat_template_and_multi_turn_masking(tokenizer) -> None:
    tokenizer.chat_template = TEMPLATE
    task = _task(tokenizer, messages_field="messages")
    msgs = [
        {"role": "user", "content": "question : one ?"},
        {"role": "assistant", "content": "answer un"},
        {"role": "user", "content": "question : two ?"},
        {"role": "assistant", "content": "answer deux"},
    ]
    [f] = task.encode([{"messages": msgs}], "src")
    learned = [t for t, lab in zip(f["input_ids"], f["labels"], strict=True) if lab != IGNORE]
    text = tokenizer.decode(learned, skip_special_tokens=True)
    assert text.split() == ["answer", "un", "answer", "deux"]
    assert "question" not in text


def test_packing_keeps_labels() -> None:
    feats = [
        {"input_ids": [1] * 5, "attention_mask": [1] * 5, "labels": [-100, -100, 1, 1, 1]} for _ in range(5)
    ]
    packed = pack(feats, 8)
    assert [len(f["input_ids"]) for f in packed] == [8, 8, 8, 1]
    assert sum(x != -100 for f in packed for x in f["labels"]) == 15
