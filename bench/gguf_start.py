"""SmolLM2-135M start-up: reading the GGUF file (de-quantise + convert the tokenizer) against the
de-quantised safetensors cache (lorakit/gguf_cache.py).

Measures, in one process: the first start with an empty cache (de-quantise, then write the cache),
then ``--repeats`` interleaved rounds of a direct GGUF load and a cached load (tokenizer + causal
LM each). Prints medians, their ratio and the load average; ``--json`` writes them too.

    python bench/gguf_start.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from lorakit.model_sources import load_pretrained, load_tokenizer, resolve_model


def start(model: str) -> float:
    """Seconds to have SmolLM2's tokenizer and float32 model in memory."""
    begin = time.perf_counter()
    ref = resolve_model(model)
    load_tokenizer(ref)
    load_pretrained(ref, AutoModelForCausalLM)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LORAKIT_CACHE_DIR"] = cache
        os.environ["LORAKIT_GGUF_CACHE"] = "1"
        first = start(args.model)
        times: dict[str, list[float]] = {"direct": [], "cached": []}
        for _ in range(args.repeats):
            for kind in ("direct", "cached"):
                os.environ["LORAKIT_GGUF_CACHE"] = "0" if kind == "direct" else "1"
                times[kind].append(start(args.model))
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": args.model,
        "first_start_s": round(first, 2),
        "direct_gguf_s": [round(t, 2) for t in times["direct"]],
        "cached_s": [round(t, 2) for t in times["cached"]],
        "median_direct_s": round(median["direct"], 2),
        "median_cached_s": round(median["cached"], 2),
        "cached_over_direct": round(median["cached"] / median["direct"], 3),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
