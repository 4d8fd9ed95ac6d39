"""How the next token is chosen: greedy or sampled (temperature, top-p), per row, seedable."""

from __future__ import annotations

import random

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator


class SamplingParams(BaseModel):
    """What one generation request asks for. Validated on construction (errors name the field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(16, ge=1, le=1_000_000)
    """Most new tokens to generate (fewer when an end-of-sequence token or a stop string comes)."""
    temperature: float = Field(0.0, ge=0.0, le=100.0)
    """0 picks the most likely token (greedy); above 0 samples from softmax(logits / temperature)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling: sample only among the most likely tokens whose probabilities sum to top_p."""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Seed of this request's own random stream: the same seed gives the same tokens, batched or not."""
    stop: list[str] = Field(default_factory=list, max_length=16)
    """Stop strings: generation ends before the first one; it is not part of the returned text."""

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else ([] if value is None else value)

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def row_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """A random stream for one sampled request (None for greedy)."""
    if params.greedy:
        return None
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**63)
    return torch.Generator(device=device).manual_seed(seed)


def sample_one(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token for one row of (vocab,) float logits."""
    if params.greedy or generator is None:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above each one
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def next_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """One token per row of (rows, vocab) logits; greedy rows share one argmax."""
    greedy = logits.argmax(-1).tolist()
    return [greedy[i] if p.greedy else sample_one(logits[i], p, generators[i]) for i, p in enumerate(params)]
