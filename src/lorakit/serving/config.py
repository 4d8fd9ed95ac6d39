"""``lorakit serve`` settings: one validated model, from flags or a YAML file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lorakit.errors import ConfigError
from lorakit.model import ADAPTER_NAME

API_KEY_ENV = "LORAKIT_API_KEY"


class ServeConfig(BaseModel):
    """Everything ``lorakit serve`` needs. YAML keys are these field names."""

    model_config = ConfigDict(extra="forbid")

    base: str
    """The base model: an alias (smollm2-135m, minilm-l6), a local model folder or a .gguf file."""
    adapters: dict[str, Path] = Field(default_factory=dict)
    """Adapters served under a name (NAME=DIR); loaded and checked at start-up."""
    adapters_dir: Path | None = None
    """A folder of adapter folders, each served under its folder name and loaded on first use."""
    host: str = "127.0.0.1"
    """Address to listen on; the default accepts local connections only."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0: any free port)."""
    max_batch: int = Field(16, ge=1, le=1024)
    """Most generation requests decoded together in one mixed-adapter batch."""
    max_queue: int = Field(256, ge=1)
    """Most requests waiting for a batch slot; more are refused with 429 and Retry-After."""
    max_loaded: int = Field(64, ge=1)
    """Most adapters held in memory; the least recently used idle one is evicted to load another."""
    api_key: str | None = None
    """When set (or LORAKIT_API_KEY is), every route but /health needs 'Authorization: Bearer KEY'."""
    allow_runtime_loading: bool = False
    """Enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (paths under adapters_dir only)."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_classify_inputs: int = Field(256, ge=1)
    """Most texts in one /v1/classify request."""
    runs: Path = Path("runs")
    """Folder of training runs shown by the web page (when lorakit.ui is installed)."""
    strategy: str = "gather"
    """Mixed-adapter strategy: gather (per-row weight stacks, batched products) or segments."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available, else cpu)."""
    num_threads: int | None = Field(None, ge=1)
    """torch intra-op threads (default: torch's choice)."""
    packed_weights: bool = True
    """Causal LMs on CPU: multiply by oneDNN-packed copies of the frozen weights (16-row decoding
    1.23x faster in BENCHMARKS.md; one more copy of the linear weights in memory, ~540 MB for
    SmolLM2-135M)."""

    @field_validator("adapters")
    @classmethod
    def _names(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name in value:
            if not ADAPTER_NAME.fullmatch(name):
                raise ValueError(
                    f"adapter name {name!r} is invalid: use 1-64 characters from A-Z a-z 0-9 _ -"
                )
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value not in ("gather", "segments"):
            raise ValueError(f"strategy {value!r} is unknown; use gather or segments")
        return value


def parse_adapter_flag(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ConfigError(f"--adapter {text!r}: expected NAME=DIR")
    return name, Path(folder)


def build_config(values: dict[str, object], source: str) -> ServeConfig:
    try:
        return ServeConfig.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {key}: {err['msg']} (got {err.get('input')!r})") from None


def read_yaml(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of serve settings")
    return data
