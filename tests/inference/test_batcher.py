"""Continuous batching with one adapter per row: every row generates what it would alone."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from conftest import tiny_gpt2, tiny_llama
from lorakit import (
    ContinuousBatcher,
    GenerationRequest,
    LoraConfig,
    SamplingParams,
    add_adapter,
    disable_adapters,
    generate,
    inject,
    set_adapter,
)
from lorakit.errors import LorakitError

TOL = 1e-5


def _adapted(build, targets: list[str], extra: list[str]) -> nn.Module:
    model = build()
    inject(model, LoraConfig(r=2, alpha=4, targets=targets))
    add_adapter(model, "b", LoraConfig(r=6, alpha=3, targets=targets))
    add_adapter(model, "c", LoraConfig(r=4, alpha=8, use_rslora=True, targets=extra))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


BUILDS = {
    "llama": (tiny_llama, ["q_proj", "v_proj"], ["k_proj", "o_proj"]),
    "gpt2-conv1d": (tiny_gpt2, ["c_attn"], ["c_proj"]),
}


def _alone(model: nn.Module, prompt: list[int], adapter: str | None, n: int) -> tuple[list[int], list]:
    """Greedy tokens and per-step logits of one prompt run by itself with a plain loop (no cache)."""
    ids, steps = list(prompt), []
    ctx = disable_adapters(model) if adapter is None else None
    if adapter is not None:
        set_adapter(model, adapter)
    with torch.no_grad(), ctx or torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            steps.append(logits)
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :], steps


def _prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(0, 99, (n,), generator=g).tolist() for n in (3, 9, 5, 12, 1, 7)]


@pytest.mark.parametrize("case", sorted(BUILDS))
def test_mixed_batch_rows_equal_each_row_alone(case: str) -> None:
    build, targets, extra = BUILDS[case]
    model = _adapted(build, targets, extra)
    prompts, adapters = _prompts(), ["default", None, "b", "c", "b", "default"]
    seen: dict[str, list[torch.Tensor]] = {}

    def hook(ids: list[str], logits: torch.Tensor) -> None:
        for i, rid in enumerate(ids):
            seen.setdefault(rid, []).append(logits[i].clone())

    batcher = ContinuousBatcher(model, max_batch=4, eos_token_ids=set(), logits_hook=hook)  # 6 rows, 4 slots
    for i, (p, a) in enumerate(zip(prompts, adapters, strict=True)):
        batcher.submit(GenerationRequest(str(i), p, a, SamplingParams(max_tokens=6 + i)))
    tokens: dict[str, list[int]] = {}
    while batcher.has_work:
        for e in batcher.step():
            tokens.setdefault(e.id, []).append(e.token_id)
    for i, (p, a) in enumerate(zip(prompts, adapters, strict=True)):
        alone, alone_logits = _alone(model, p, a, 6 + i)
        assert tokens[str(i)] == alone, (case, i, a)
        for got, want in zip(seen[str(i)], alone_logits, strict=True):
            assert (got - want).abs().max() <= TOL


def test_a_request_joining_mid_run_leaves_the_others_unchanged() -> None:
    model = _adapted(*BUILDS["llama"])
    prompts = _prompts()
    batcher = ContinuousBatcher(model, max_batch=8, eos_token_ids=set())
    batcher.submit(GenerationRequest("long", prompts[3], "b", SamplingParams(max_tokens=20)))
    out: dict[str, list[int]] = {"long": [], "short": []}
    for step in range(20):
        if step == 5:
            batcher.submit(GenerationRequest("short", prompts[0], "c", SamplingParams(max_tokens=3)))
        for e in batcher.step():
            out[e.id].append(e.token_id)
        if step == 7:  # the short one finished within its own 3 steps and has left
            assert batcher.running == 1
    assert out["long"] == _alone(model, prompts[3], "b", 20)[0]
    assert out["short"] == _alone(model, prompts[0], "c", 3)[0]


def test_cancel_frees_the_slot_at_the_next_step() -> None:
    model = _adapted(*BUILDS["llama"])
    batcher = ContinuousBatcher(model, max_batch=1, eos_token_ids=set())
    batcher.submit(GenerationRequest("a", [1, 2, 3], None, SamplingParams(max_tokens=50)))
    batcher.submit(GenerationRequest("b", [4, 5], None, SamplingParams(max_tokens=2)))
    batcher.step()
    assert batcher.running == 1 and len(batcher.waiting) == 1
    batcher.cancel("a")
    events = batcher.step()
    assert [e.id for e in events] == ["b"] and batcher.running == 1


def test_sampling_with_a_seed_is_the_same_batched_or_alone() -> None:
    model = _adapted(*BUILDS["llama"])
    prompts = _prompts()[:3]
    kwargs = {"temperature": 1.3, "top_p": 0.9, "seed": 11, "max_new_tokens": 8}
    together = generate(model, prompts, ["b", None, "c"], **kwargs)
    for i, (p, a) in enumerate(zip(prompts, ["b", None, "c"], strict=True)):
        alone = generate(model, [p], [a], **{**kwargs, "seed": 11 + i})[0]
        assert alone.token_ids == together[i].token_ids
    greedy = generate(model, prompts, ["b", None, "c"], max_new_tokens=8)
    assert [c.token_ids for c in greedy] != [c.token_ids for c in together]  # sampling did sample


def test_context_limit_and_bad_adapters_are_refused_up_front() -> None:
    model = _adapted(*BUILDS["llama"])  # max_position_embeddings = 64
    batcher = ContinuousBatcher(model)
    with pytest.raises(LorakitError, match=r"60 tokens\) \+ max_tokens \(10\) = 70 exceeds .* 64"):
        batcher.submit(GenerationRequest("x", [1] * 60, None, SamplingParams(max_tokens=10)))
    with pytest.raises(LorakitError, match="no adapter named 'zz'"):
        batcher.submit(GenerationRequest("x", [1], "zz"))
    with pytest.raises(LorakitError, match="empty"):
        batcher.submit(GenerationRequest("x", [], None))
    assert not batcher.has_work


def test_rows_that_stay_keep_their_places_and_the_last_ones_fill_the_gaps() -> None:
    from lorakit.inference.batcher import _survivors

    rng = random.Random(0)
    for _ in range(200):
        alive = [rng.random() < 0.7 for _ in range(rng.randint(0, 12))]
        order = _survivors(alive)
        assert sorted(order) == [i for i, a in enumerate(alive) if a]  # each survivor once
        assert all(order[i] == i for i in range(len(order)) if alive[i])  # in place when it can be
