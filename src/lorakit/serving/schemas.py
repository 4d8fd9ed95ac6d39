"""Request bodies of the HTTP API (OpenAI's shapes); pydantic validates them before any work."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lorakit.inference.sampling import SamplingParams


class _Sampling(BaseModel):
    """The sampling fields that completions and chat share (OpenAI's names and defaults)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields lorakit ignores (user, ...)

    model: str = Field(min_length=1, max_length=256)
    """The adapter name, or the base model's id for no adapter."""
    max_tokens: int | None = Field(None, ge=1, le=100_000)
    """Most new tokens (default 16)."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """0: greedy; above 0: sampled."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Seed of the request's random stream."""
    stop: str | list[str] | None = None
    """Up to 4 stop strings; the text ends before the first one."""
    stream: bool = False
    """Send server-sent events as tokens come, ending with data: [DONE]."""
    n: int = Field(1, ge=1, le=1)
    """Choices per prompt (only 1)."""

    def sampling(self, default_max: int = 16) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens or default_max,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
        )


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=64)]
    """The prompt, or a list of prompts (one choice each)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = Field(max_length=200_000)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    """The conversation; the tokenizer's chat template formats it."""
    max_completion_tokens: int | None = Field(None, ge=1, le=100_000)
    """Newer name of max_tokens."""


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    """A classification or token_classification adapter."""
    input: str | Annotated[list[str], Field(min_length=1)]
    """One text or a list of texts."""


class LoadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1, max_length=64)
    """Name to serve the adapter under."""
    lora_path: str = Field(min_length=1, max_length=4096)
    """Adapter folder, under --adapters-dir (relative to it, or absolute inside it)."""


class UnloadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1, max_length=64)
    lora_path: str | None = None
