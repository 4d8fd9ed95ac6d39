"""The base model the server runs, and putting adapters onto it / taking them off.

A causal-LM base is one model; every adapter is loaded onto it. An encoder base is one shared
backbone (the LoRA layers of every adapter live in it) under one head model per kind of head,
``(task, number of labels)``: each classification adapter brings its own trained head
(modules_to_save), and heads of one shape run in one mixed batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorakit.adapter_io import load_adapter
from lorakit.errors import LorakitError
from lorakit.fast_modules import prepare_for_serving
from lorakit.model import adapter_state, delete_adapter, has_adapters
from lorakit.model_sources import ModelRef, load_pretrained, load_tokenizer, model_kind, resolve_model
from lorakit.serving.store import AdapterInfo
from lorakit.tasks.common import set_pad_token

ENCODER_TASKS = ("classification", "token_classification")


def base_id(spec: str) -> str:
    """The name clients use for the base model: the alias, or the folder / file name."""
    return spec if "/" not in spec and "\\" not in spec else Path(spec).name


class Backend:
    """Owns the model(s); every method runs on the engine thread."""

    def __init__(self, spec: str, device: str = "cpu", *, packed_weights: bool = True) -> None:
        self.ref: ModelRef = resolve_model(spec)
        self.id = base_id(spec)
        kind = model_kind(self.ref)
        if kind == "encoder" and self.ref.gguf_file:  # GGUF configs carry no architectures; GGUF holds LLMs
            kind = "causal_lm"
        if kind == "seq2seq":
            raise LorakitError(f"{spec}: lorakit serve runs causal LM and encoder bases, not seq2seq models")
        self.kind = kind  # "causal_lm" | "encoder"
        self.device = torch.device(device)
        self.tokenizer = load_tokenizer(self.ref)
        self.pad_id = set_pad_token(self.tokenizer)
        self.heads: dict[tuple[str, int], nn.Module] = {}
        self.lm: nn.Module | None = None
        self.backbone: nn.Module | None = None
        if kind == "causal_lm":
            from transformers import AutoModelForCausalLM

            self.lm = load_pretrained(self.ref, AutoModelForCausalLM).to(self.device).eval()
            # Empty LoRA wrappers on every linear layer (adapters attach without building any) and,
            # unless turned off, packed weights for every frozen product: a decode step streams
            # the whole model, and oneDNN's blocked layout made it 1.23x faster (BENCHMARKS.md).
            prepare_for_serving(self.lm, packed=packed_weights)
        else:
            from transformers import AutoModelForSequenceClassification

            first = load_pretrained(self.ref, AutoModelForSequenceClassification, num_labels=2)
            self.backbone = getattr(first, first.base_model_prefix).to(self.device).eval()

    @property
    def task(self) -> str:
        return "causal_lm" if self.kind == "causal_lm" else "classification"

    def accepts(self, info: AdapterInfo) -> None:
        ok = info.task == "causal_lm" if self.kind == "causal_lm" else info.task in ENCODER_TASKS
        if not ok:
            raise LorakitError(
                f"adapter {info.name!r} is a {info.task} adapter; this server's base {self.id!r} serves "
                f"{'causal_lm' if self.kind == 'causal_lm' else ' / '.join(ENCODER_TASKS)} adapters"
            )

    def head_model(self, task: str, n_labels: int) -> nn.Module:
        """The model of one head shape, sharing the backbone (built on first use)."""
        key = (task, n_labels)
        if key not in self.heads:
            from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

            auto = (
                AutoModelForSequenceClassification
                if task == "classification"
                else AutoModelForTokenClassification
            )
            model = load_pretrained(self.ref, auto, num_labels=n_labels)
            setattr(model, model.base_model_prefix, self.backbone)
            model.config.pad_token_id = self.pad_id
            self.heads[key] = model.to(self.device).eval()
        return self.heads[key]

    def model_for(self, info: AdapterInfo | None) -> nn.Module:
        if self.kind == "causal_lm":
            assert self.lm is not None
            return self.lm
        if info is None:
            raise LorakitError(f"the base model {self.id!r} has no trained head: name an adapter")
        return self.head_model(info.task, len(info.labels or []))

    def attach(self, info: AdapterInfo) -> None:
        """Load an adapter with lorakit's strict loader (checksum, base fingerprint, shapes)."""
        self.accepts(info)
        model = self.model_for(info)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a PEFT file without fingerprint loads with a warning
            load_adapter(model, info.path, info.name)
        # The model is in eval mode and the loader's new modules follow the layers they wrap
        # (a model-wide eval() here walked every loaded adapter's modules at every load).

    def detach(self, info: AdapterInfo) -> None:
        model = self.model_for(info)
        if has_adapters(model) and info.name in adapter_state(model).configs:
            # Wrappers stay (empty ones compute the base exactly): the next adapter on these
            # layers attaches without rebuilding 100+ modules (cold load, BENCHMARKS.md).
            # Its A/B modules stay too, for the next adapter of the same rank (no optimizer here).
            delete_adapter(model, info.name, unwrap=False, recycle=True)

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise LorakitError(f"the tokenizer of {self.id!r} has no chat template; use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt)["input_ids"]
