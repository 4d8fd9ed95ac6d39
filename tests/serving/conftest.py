"""A tiny causal LM and a tiny encoder saved to folders, adapters for them, and running servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from lorakit import LoraConfig, inject, save_adapter
from lorakit.serving.api import create_app
from lorakit.serving.config import ServeConfig
from lorakit.serving.state import ServerState
from lorakit.tasks.common import write_task_file
from tiny_assets import make_model

CHAT = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}answer{% endif %}"
)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or ".modules_to_save." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def write_lm_adapter(base: Path, out: Path, r: int, seed: int, targets: list[str]) -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    inject(model, LoraConfig(r=r, alpha=2 * r, targets=targets))
    _randomize(model, seed)
    save_adapter(model, out)
    write_task_file(out, {"task": "causal_lm", "model": str(base), "labels": None})
    return out


def write_encoder_adapter(base: Path, out: Path, task: str, labels: list[str], seed: int) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForTokenClassification
    model = auto.from_pretrained(base, num_labels=len(labels))
    inject(model, LoraConfig(r=4, alpha=8, targets=["query", "value"], modules_to_save=["classifier"]))
    _randomize(model, seed)
    save_adapter(model, out)
    write_task_file(out, {"task": task, "model": str(base), "labels": labels})
    return out


@pytest.fixture(scope="session")
def lm_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-lm")
    base = make_model(root / "base", "llama")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = CHAT
    tok.save_pretrained(base)
    other = root / "other-base"
    torch.manual_seed(1)
    make_model(other, "llama")
    with torch.no_grad():  # same architecture, different weights
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(other)
        for p in m.parameters():
            p.add_(0.01)
        m.save_pretrained(other)
    pool = root / "pool"
    assets = {
        "base": base,
        "pool": pool,
        "a": write_lm_adapter(base, pool / "a", 2, 1, ["q_proj", "v_proj"]),
        "b": write_lm_adapter(base, pool / "b", 6, 2, ["q_proj", "k_proj", "o_proj"]),
        "c": write_lm_adapter(base, pool / "c", 4, 3, ["v_proj"]),
        "wrongbase": write_lm_adapter(other, pool / "wrongbase", 2, 4, ["q_proj"]),
        "corrupt": write_lm_adapter(base, pool / "corrupt", 2, 5, ["q_proj"]),
        "outside": write_lm_adapter(base, root / "outside", 2, 6, ["q_proj"]),
    }
    weights = pool / "corrupt" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in a tensor: the checksum must catch it
    weights.write_bytes(bytes(data))
    return assets


@pytest.fixture(scope="session")
def encoder_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-enc")
    base = make_model(root / "base", "bert")
    return {
        "base": base,
        "sent": write_encoder_adapter(base, root / "sent", "classification", ["neg", "pos"], 1),
        "sent2": write_encoder_adapter(base, root / "sent2", "classification", ["bad", "good"], 2),
        "topic": write_encoder_adapter(base, root / "topic", "classification", ["x", "y", "z"], 3),
        "ner": write_encoder_adapter(
            base, root / "ner", "token_classification", ["O", "B-PER", "I-PER", "B-LOC"], 4
        ),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, state: ServerState) -> None:
        import uvicorn

        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(state), host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def lm_config(assets: dict[str, Path], **kw: object) -> ServeConfig:
    values: dict = {
        "base": str(assets["base"]),
        "adapters": {"a": assets["a"], "b": assets["b"]},
        "adapters_dir": assets["pool"],
        "max_batch": 4,
        **kw,
    }
    return ServeConfig(**values)


@pytest.fixture(scope="module")
def lm_server(lm_assets: dict[str, Path]) -> Iterator[LiveServer]:
    with LiveServer(ServerState(lm_config(lm_assets, allow_runtime_loading=True))) as server:
        yield server


@pytest.fixture(scope="module")
def encoder_server(encoder_assets: dict[str, Path]) -> Iterator[LiveServer]:
    cfg = ServeConfig(
        base=str(encoder_assets["base"]), adapters={k: v for k, v in encoder_assets.items() if k != "base"}
    )
    with LiveServer(ServerState(cfg)) as server:
        yield server
