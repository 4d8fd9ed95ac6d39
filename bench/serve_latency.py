"""SmolLM2-135M: adapter cold-load time and continuous-batching latency (issue 13 targets).

* cold load: a 4 MB adapter (r=8 on q/k/v/o, 3.7 MB of float32) read from disk through the strict
  loader (checksum, base fingerprint, shapes) by the server's adapter store; p50/p95 over 30 loads
  of 30 different folders (the files are in the OS page cache, as on a warm server), each evicted
  before the next. The server wraps every linear layer at start-up and keeps the wrappers (and the
  evicted adapter's A/B modules) on eviction; the first load also hashes the targeted base
  weights once for the fingerprint check.
* continuous batching: latency of an 8-token request alone, and sent while a 256-token request
  runs (it joins the running batch at the next step); target: within 2x.

    python bench/serve_latency.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Measured as `lorakit serve` runs by default: torch's default thread count and OpenMP's own
# wait policy (threads spin briefly between the back-to-back products of a decode loop; the
# training benchmarks make them sleep instead, see common.py). Export OMP_WAIT_POLICY to override.
os.environ["LORAKIT_BENCH_AS_SERVED"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from serve_generate import make_adapters

import lorakit
from lorakit.inference import ContinuousBatcher, GenerationRequest, SamplingParams
from lorakit.serving.backend import Backend
from lorakit.serving.server import settle_heap
from lorakit.serving.store import AdapterStore


def cold_loads(backend: Backend, paths: list[Path], resident: int = 0) -> list[float]:
    """Load (and evict) each adapter of ``paths[resident:]`` while ``paths[:resident]`` stay loaded."""
    store = AdapterStore(len(paths) + 1, backend.attach, backend.detach, "causal_lm")
    for i, p in enumerate(paths):
        (p / "lorakit_task.json").write_text('{"task": "causal_lm", "model": "smollm2-135m"}')
        store.register(f"ad{i}", p)
    for i in range(resident):
        store.acquire(f"ad{i}")
    times = []
    for i in range(resident, len(paths)):
        t0 = time.perf_counter()
        store.acquire(f"ad{i}")
        times.append(time.perf_counter() - t0)
        store.release(f"ad{i}")
        store.evict(f"ad{i}")
    for i in range(resident):
        store.release(f"ad{i}")
        store.evict(f"ad{i}")
    return times


def latency(model, prompt: list[int], tokens: int, adapter: str, background: int | None) -> float:
    batcher = ContinuousBatcher(model, max_batch=8, eos_token_ids=set())
    if background:
        batcher.submit(GenerationRequest("long", prompt, "ad1", SamplingParams(max_tokens=background)))
        for _ in range(5):
            batcher.step()
    t0 = time.perf_counter()
    batcher.submit(GenerationRequest("short", prompt, adapter, SamplingParams(max_tokens=tokens)))
    while True:
        if any(e.id == "short" and e.finish_reason for e in batcher.step()):
            return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "serve_latency.json")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    backend = Backend("smollm2-135m")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_adapters(backend.lm, args.loads, Path(tmp))
        size_mb = (paths[0] / "adapter_model.safetensors").stat().st_size / 1e6
        settle_heap()  # what `lorakit serve` does once its base is loaded, before serving
        loads = cold_loads(backend, paths)
        loads_beside = cold_loads(backend, paths, resident=args.loads // 2)
        lorakit.load_adapter(backend.lm, paths[0], "ad0")
        lorakit.load_adapter(backend.lm, paths[1], "ad1")
    prompt = backend.chat_ids([{"role": "user", "content": "Tell me a story about a lighthouse keeper."}])
    alone, joined = [], []
    for _ in range(args.repeats):  # interleaved
        alone.append(latency(backend.lm, prompt, 8, "ad0", None))
        joined.append(latency(backend.lm, prompt, 8, "ad0", 256))
    q = statistics.quantiles(loads, n=20)
    out = {
        "machine": common.machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "adapter_mb": size_mb,
        "cold_load_s": {"p50": statistics.median(loads), "p95": q[18], "n": len(loads)},
        # the very first load also hashes the targeted base weights (cached for later loads)
        "first_load_s": loads[0],
        "cold_load_beside_resident_s": {
            "resident": args.loads // 2,
            "p50": statistics.median(loads_beside),
            "p95": statistics.quantiles(loads_beside, n=20)[18],
            "n": len(loads_beside),
        },
        "short_alone_s": statistics.median(alone),
        "short_beside_long_s": statistics.median(joined),
        "ratio": statistics.median(joined) / statistics.median(alone),
        "alone": alone,
        "joined": joined,
    }
    common.write_json(args.out, out)
    print(
        f"| measure | value | target |\n| --- | ---: | --- |\n"
        f"| cold load of a {size_mb:.1f} MB adapter, p50 / p95 ({len(loads)} loads) | "
        f"{out['cold_load_s']['p50'] * 1000:.0f} / {out['cold_load_s']['p95'] * 1000:.0f} ms "
        "| p50 <= 50 ms |\n"
        f"| of which the first load (it also hashes the 120 targeted base weights, once per server) | "
        f"{out['first_load_s'] * 1000:.0f} ms | |\n"
        f"| the same with {args.loads // 2} other adapters loaded, p50 / p95 "
        f"({out['cold_load_beside_resident_s']['n']} loads) | "
        f"{out['cold_load_beside_resident_s']['p50'] * 1000:.0f} / "
        f"{out['cold_load_beside_resident_s']['p95'] * 1000:.0f} ms | |\n"
        f"| 8-token request alone (median of {args.repeats}) | {out['short_alone_s']:.2f} s | |\n"
        f"| 8-token request sent while a 256-token one runs | {out['short_beside_long_s']:.2f} s "
        f"({out['ratio']:.2f}x) | <= 2x |\n\n"
        f"load average before/after: {load_before} / {out['loadavg_after']}"
    )


if __name__ == "__main__":
    main()
