"""torchrun variables, backend choice, strategy selection and the launcher command."""

from __future__ import annotations

import sys

import pytest
import torch
from tests.conftest import tiny_bert

from lorakit.distributed import (
    DataParallel,
    DistContext,
    FullyShard,
    SingleProcess,
    backend_for,
    context_from_env,
    local_device,
    repeated_blocks,
    select_strategy,
    torchrun_command,
)
from lorakit.distributed.strategy import original_class_name
from lorakit.errors import LorakitError


def test_no_torchrun_variables_means_single_process() -> None:
    ctx = context_from_env({})
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)


def test_torchrun_variables_are_read() -> None:
    ctx = context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
        {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
    ],
)
def test_bad_torchrun_variables_are_user_errors(env: dict[str, str]) -> None:
    with pytest.raises(LorakitError, match="RANK"):
        context_from_env(env)


def test_backend_follows_device() -> None:
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 1)) == "nccl"


def test_device_per_local_rank() -> None:
    ctx = DistContext(rank=1, world_size=2, local_rank=1)
    assert local_device(torch.device("cpu"), ctx) == torch.device("cpu")
    assert local_device(torch.device("cuda"), ctx) == torch.device("cuda", 1)
    assert local_device(torch.device("cuda"), DistContext()) == torch.device("cuda")
    with pytest.raises(LorakitError, match="mps"):
        local_device(torch.device("mps"), ctx)


def test_strategy_selection() -> None:
    one, two = DistContext(), DistContext(rank=0, world_size=2)
    assert isinstance(select_strategy("fsdp", one), SingleProcess)
    assert isinstance(select_strategy("ddp", two), DataParallel)
    assert isinstance(select_strategy("fsdp", two), FullyShard)


def test_fsdp_units_are_the_transformer_blocks() -> None:
    model = tiny_bert()
    assert repeated_blocks(model) == list(model.bert.encoder.layer)
    assert original_class_name(model) == "BertForSequenceClassification"


def test_launcher_runs_torchrun_on_this_python() -> None:
    cmd = torchrun_command(4, ["train", "c.yaml", "train.lr=1e-3"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[-5:] == ["-m", "lorakit", "train", "c.yaml", "train.lr=1e-3"]
