"""Run under torchrun by test_primitives.py: checks DDP/FSDP wrapping and the collectives."""

from __future__ import annotations

import json
import sys

import torch
from tests.conftest import tiny_bert

from lorakit import LoraConfig, inject
from lorakit.adapter_io import adapter_payload
from lorakit.distributed import (
    all_gather_rows,
    all_reduce_rows,
    all_reduce_sums,
    broadcast_flag,
    full_tensor,
    gather_state,
    init_distributed,
    is_sharded,
    rank,
    reshard_optimizer_state,
    select_strategy,
    shard_like,
    shutdown_distributed,
    unwrap,
)


def build() -> torch.nn.Module:
    model = tiny_bert(2)
    torch.manual_seed(0)
    return inject(model, LoraConfig(r=4, targets=["query", "value"], modules_to_save=["classifier"]))


def same_payload(a, b) -> bool:
    tensors = a.tensors.keys() == b.tensors.keys() and all(
        torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors
    )
    return tensors and a.metadata == b.metadata and a.config == b.config


def optimizer_roundtrip(model: torch.nn.Module) -> bool:
    """Gathered FSDP optimizer state, loaded into a fresh optimizer and resharded, is the same."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(rank()))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    opt.step()
    saved = opt.state_dict()
    flat = {f"{i}.{k}": v for i, st in saved["state"].items() for k, v in st.items()}
    full = gather_state(flat)
    fresh = torch.optim.AdamW(params, lr=1e-2)
    state = {i: {k: full[f"{i}.{k}"] for k in st} for i, st in saved["state"].items()}
    fresh.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    reshard_optimizer_state(fresh)
    again = gather_state(
        {f"{i}.{k}": v for i, st in fresh.state_dict()["state"].items() for k, v in st.items()}
    )
    return all(is_sharded(v) for st in fresh.state.values() for k, v in st.items() if k != "step") and all(
        torch.equal(full[k], again[k]) for k in full
    )


def main() -> None:
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    ctx = init_distributed(cpu)
    report: dict[str, object] = {"world": ctx.world_size, "backend": ctx.backend}
    reference = adapter_payload(build())

    model = build()
    ddp = select_strategy("ddp", ctx).wrap(model, cpu)
    logged = ddp._get_ddp_logging_data()
    report["ddp_reduced_bytes"] = logged["total_parameter_size_bytes"]
    report["trainable_bytes"] = sum(
        p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
    )
    report["ddp_payload_same"] = same_payload(adapter_payload(unwrap(ddp)), reference)

    model = build()
    select_strategy("fsdp", ctx).wrap(model, cpu)
    weight = model.classifier.modules_to_save["default"].weight
    report["fsdp_sharded"] = tuple(weight.to_local().shape) != tuple(weight.shape)
    report["fsdp_payload_same"] = same_payload(adapter_payload(model), reference)
    full = torch.arange(float(weight.numel())).reshape(weight.shape)
    report["shard_like_roundtrip"] = torch.equal(full_tensor(shard_like(full, weight)), full)

    report["optimizer_roundtrip"] = optimizer_roundtrip(model)

    report["sums"] = all_reduce_sums({"n": 1.0, "r": float(ctx.rank)})
    rows = torch.full((ctx.rank + 1, 2), float(ctx.rank))
    report["rows"] = all_gather_rows(rows)[:, 0].tolist()
    mine = torch.zeros(3, 2)
    mine[ctx.rank] = float(ctx.rank + 1)
    report["reduced_rows"] = all_reduce_rows(mine)[:, 0].tolist()
    report["flag"] = broadcast_flag(ctx.rank == 0)
    if ctx.is_main:
        print("REPORT " + json.dumps(report), flush=True)
    shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
