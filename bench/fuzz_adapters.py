"""Fuzzing of adapter loading: build a valid adapter, damage a copy, load it, judge the outcome.

A case is judged by what ``lorakit.load_adapter`` does with the damaged folder:

* ``identical``: it loaded, and the model's outputs are bit-identical to loading the original;
* ``error``: it raised a ``LorakitError`` whose message names the adapter folder, and the model
  was left exactly as it was (same outputs as the base, no adapter state);
* ``silent``: it loaded and the outputs changed (a failure);
* ``other``: any other exception, or an error that names no file or left the model changed
  (a failure).

Native crashes cannot be judged in-process: ``bench.fuzz_campaign`` runs ``worker`` in a child
process that prints one line per finished case, so a crash is pinned to the case that caused it.
The same damaged folder is optionally loaded with PEFT, for comparison only.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from bench.fuzz_campaign import CASE_PREFIX
from bench.fuzz_mutations import copy_adapter, mutate
from lorakit import LoraConfig, LorakitError, inject, load_adapter, save_adapter
from lorakit.model import has_adapters

KINDS = ("bert", "gpt2")


@dataclass
class Fixture:
    """A base model, its inputs, a saved adapter and the reference outputs."""

    kind: str
    base: nn.Module
    inputs: dict[str, torch.Tensor]
    folder: Path
    base_out: torch.Tensor
    ref_out: torch.Tensor


@dataclass
class CaseResult:
    index: int
    model: str
    mutation: str
    description: str
    outcome: str
    detail: str = ""
    peft: str = ""


def _tiny_model(kind: str) -> tuple[nn.Module, LoraConfig]:
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if kind == "bert":
        cfg = BertConfig(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
            num_labels=3,
        )
        lora = LoraConfig(r=4, alpha=8, targets=["query", "value"], modules_to_save=["classifier"])
        return BertForSequenceClassification(cfg).eval(), lora
    cfg = GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    lora = LoraConfig(
        r=4, alpha=16, targets=["c_attn"], modules_to_save=["ln_f"], rank_pattern={r"h\.1\..*": 2}
    )
    return GPT2LMHeadModel(cfg).eval(), lora


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def build_fixture(kind: str, root: Path) -> Fixture:
    """Save an adapter with non-zero LoRA weights and a trained modules_to_save copy."""
    base, lora = _tiny_model(kind)
    inputs = {"input_ids": torch.randint(0, 99, (2, 7), generator=torch.Generator().manual_seed(1))}
    model = inject(copy.deepcopy(base), lora)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or ".modules_to_save." in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    folder = save_adapter(model, root / kind)
    ref = logits(load_adapter(copy.deepcopy(base), folder), inputs)
    assert torch.equal(ref, logits(model, inputs)), "round trip of the clean adapter is not exact"
    return Fixture(kind, base, inputs, folder, logits(base, inputs), ref)


def judge_lorakit(fx: Fixture, folder: Path) -> tuple[str, str]:
    model = copy.deepcopy(fx.base)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_adapter(model, folder)
    except LorakitError as e:
        msg = str(e)
        if has_adapters(model) or not torch.equal(logits(model, fx.inputs), fx.base_out):
            return "other", f"failed load left the model changed: {msg}"
        if str(folder) not in msg:
            return "other", f"error names no file: {msg}"
        return "error", msg
    except Exception as e:
        return "other", f"{type(e).__name__}: {e}"
    if torch.equal(logits(model, fx.inputs), fx.ref_out):
        return "identical", ""
    return "silent", "loaded, outputs changed"


def judge_peft(fx: Fixture, folder: Path, peft_ref: torch.Tensor) -> str:
    """'error', 'identical' or 'changed' (loaded without error, different outputs)."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = PeftModel.from_pretrained(copy.deepcopy(fx.base), str(folder))
            out = logits(model, fx.inputs)
    except Exception:
        return "error"
    return "identical" if torch.equal(out, peft_ref) else "changed"


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"lorakit-fuzz:{seed}:{index}")


def run_case(
    fixtures: dict[str, Fixture], peft_refs: dict[str, torch.Tensor] | None, seed: int, index: int, work: Path
) -> CaseResult:
    rng = case_rng(seed, index)
    fx = fixtures[rng.choice(KINDS)]
    folder = copy_adapter(fx.folder, work / f"case{index}")
    mutation, description = mutate(rng, folder)
    outcome, detail = judge_lorakit(fx, folder)
    peft = judge_peft(fx, folder, peft_refs[fx.kind]) if peft_refs is not None else ""
    return CaseResult(index, fx.kind, mutation, description, outcome, detail[:300], peft)


def worker(seed: int, start: int, count: int, with_peft: bool) -> None:
    """Run cases start..start+count-1, printing one JSON line per case as soon as it ends."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="lorakit-fuzz-") as tmp:
        root = Path(tmp)
        fixtures = {k: build_fixture(k, root / "clean") for k in KINDS}
        peft_refs = None
        if with_peft:
            from peft import PeftModel

            peft_refs = {
                k: logits(PeftModel.from_pretrained(copy.deepcopy(f.base), str(f.folder)), f.inputs)
                for k, f in fixtures.items()
            }
        for index in range(start, start + count):
            result = run_case(fixtures, peft_refs, seed, index, root)
            print(CASE_PREFIX + json.dumps(asdict(result)), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one chunk of adapter-loading fuzz cases.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--peft", action="store_true", help="also load every case with PEFT")
    args = parser.parse_args(argv)
    worker(args.seed, args.start, args.count, args.peft)


if __name__ == "__main__":
    main(sys.argv[1:])
