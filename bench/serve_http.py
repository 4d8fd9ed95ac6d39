"""HTTP load on `lorakit serve` (SmolLM2-135M, loopback only, bounded in time): issue 13 targets.

Phases against one server process (`lorakit serve --adapters-dir`), 32 concurrent streaming clients:
  warm-up   20 s, the 50 adapters in turn (every one loaded and served); resident memory noted
            (1 s after the phase, the server idle)
  one       60 s, every request on the same adapter
  fifty     60 s, a random adapter of 50 per request; resident memory after (leak check)
then a second server with 500 adapters on disk and --max-loaded 50, 60 s of random adapters:
latency of requests that hit an adapter evicted (or never loaded) is reported separately.
Each request: a short chat prompt, 16 new tokens, greedy, stream=true (time to first token).

    python bench/serve_http.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The server runs as `lorakit serve` does by default (OpenMP's own wait policy); see serve_generate.py.
os.environ["LORAKIT_BENCH_AS_SERVED"] = "1"

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from serve_generate import TARGETS

import lorakit

CLIENTS = 32


def write_adapters(base: torch.nn.Module, n: int, root: Path) -> None:
    """n adapters (r=8 on q/k/v/o, ~4 MB each) with different random weights, via one injected model."""
    net = lorakit.inject(base, lorakit.LoraConfig(r=8, alpha=16, targets=TARGETS))
    for i in range(n):
        g = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if ".lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * (0.02 if ".lora_B." in name else 0.05))
        lorakit.save_adapter(net, root / f"ad{i:03d}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_rss_mb(pid: int) -> float:
    """Resident memory once the server has gone idle: its engine hands freed heap pages back to the
    OS when the work runs out, so this is what stays in use, not the last busy moment's peak."""
    time.sleep(1.0)
    return rss_mb(pid)


async def client(url: str, pick, deadline: float, out: list[dict]) -> None:
    async with httpx.AsyncClient(timeout=300) as http:
        while time.perf_counter() < deadline:
            model = pick()
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "Name three colours."}],
                "max_tokens": 16,
                "temperature": 0,
                "stream": True,
            }
            t0 = time.perf_counter()
            first, tokens, status = None, 0, 0
            try:
                async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    status = r.status_code
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            chunk = json.loads(line[6:])
                            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                                first = first or time.perf_counter()
                            if chunk.get("usage"):
                                tokens = chunk["usage"]["completion_tokens"]
            except httpx.HTTPError:
                status = -1
            out.append(
                {
                    "model": model,
                    "start": t0,
                    "latency": time.perf_counter() - t0,
                    "ttft": (first or time.perf_counter()) - t0,
                    "tokens": tokens,
                    "status": status,
                }
            )


def run_phase(url: str, pick, seconds: float) -> dict:
    out: list[dict] = []
    deadline = time.perf_counter() + seconds

    async def main() -> None:
        await asyncio.gather(*[client(url, pick, deadline, out) for _ in range(CLIENTS)])

    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    return summarize(out, wall) | {"records": out}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def summarize(records: list[dict], wall: float) -> dict:
    ok = [r for r in records if r["status"] == 200]
    lat, ttft = [r["latency"] for r in ok], [r["ttft"] for r in ok]
    return {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "wall_s": wall,
        "requests_per_s": len(ok) / wall,
        "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
        "latency_p50": pct(lat, 0.5),
        "latency_p95": pct(lat, 0.95),
        "latency_p99": pct(lat, 0.99),
        "ttft_p50": pct(ttft, 0.5),
        "ttft_p99": pct(ttft, 0.99),
    }


def start_server(adapters_dir: Path, port: int, max_loaded: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "lorakit",
        "serve",
        "--base",
        "smollm2-135m",
        "--adapters-dir",
        str(adapters_dir),
        "--port",
        str(port),
        "--max-batch",
        str(CLIENTS),
        "--max-loaded",
        str(max_loaded),
        "--max-queue",
        "1024",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def evicted_latencies(records: list[dict], max_loaded: int) -> list[float]:
    """Requests whose adapter was not among the max_loaded most recently used when they were sent."""
    recent: list[str] = []
    cold = []
    for r in sorted(records, key=lambda r: r["start"]):
        if r["model"] not in recent[-max_loaded:] and r["status"] == 200:
            cold.append(r["latency"])
        if r["model"] in recent:
            recent.remove(r["model"])
        recent.append(r["model"])
    return cold


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "serve_http.json")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    base = common.load_base("smollm2-135m").eval()
    result: dict = {"machine": common.machine(), "loadavg_before": load_before, "clients": CLIENTS}
    port = 8761
    with tempfile.TemporaryDirectory() as tmp:
        fifty, many = Path(tmp) / "fifty", Path(tmp) / "many"
        write_adapters(base, 500, many)
        fifty.mkdir()
        for i in range(50):
            (fifty / f"ad{i:03d}").symlink_to(many / f"ad{i:03d}")
        del base
        names = [f"ad{i:03d}" for i in range(50)]
        proc = start_server(fifty, port, 64)
        url = f"http://127.0.0.1:{port}"
        try:
            warm = itertools.cycle(names)  # every adapter loaded and served in a mixed batch
            run_phase(url, lambda: next(warm), 20)
            rss_warm = idle_rss_mb(proc.pid)
            one = run_phase(url, lambda: names[0], args.seconds)
            fifty_run = run_phase(url, lambda: random.choice(names), args.seconds)
            rss_after = idle_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(120)
        all500 = [f"ad{i:03d}" for i in range(500)]
        proc = start_server(many, port, 50)
        try:
            evict = run_phase(url, lambda: random.choice(all500), args.seconds)
        finally:
            proc.terminate()
            proc.wait(120)
    cold = evicted_latencies(evict.pop("records"), 50)
    one.pop("records"), fifty_run.pop("records")
    result |= {
        "one_adapter": one,
        "fifty_adapters": fifty_run,
        "rss_after_warmup_mb": rss_warm,
        "rss_after_run_mb": rss_after,
        "five_hundred": evict,
        "evicted": {"n": len(cold), "latency_p50": pct(cold, 0.5), "latency_p99": pct(cold, 0.99)},
        "loadavg_after": os.getloadavg(),
    }
    common.write_json(args.out, result)
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "| phase (32 clients, 16 tokens, stream) | requests | errors | req/s | tokens/s "
        "| latency p50 / p95 / p99 s | TTFT p50 / p99 s |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for key, label in (
        ("one_adapter", "1 adapter"),
        ("fifty_adapters", "50 adapters, random"),
        ("five_hundred", "500 on disk, --max-loaded 50"),
    ):
        p = r[key]
        lines.append(
            f"| {label} | {p['requests']} | {p['errors']} | {p['requests_per_s']:.2f} | "
            f"{p['tokens_per_s']:.1f} | {p['latency_p50']:.2f} / {p['latency_p95']:.2f} / "
            f"{p['latency_p99']:.2f} | {p['ttft_p50']:.2f} / {p['ttft_p99']:.2f} |"
        )
    ratio = r["fifty_adapters"]["tokens_per_s"] / max(r["one_adapter"]["tokens_per_s"], 1e-9)
    growth = r["rss_after_run_mb"] / r["rss_after_warmup_mb"] - 1
    e = r["evicted"]
    lines += [
        "",
        f"throughput with 50 adapters / with 1: {ratio:.2f}x (target >= 0.8x); resident memory "
        f"{r['rss_after_warmup_mb']:.0f} MB after warm-up, {r['rss_after_run_mb']:.0f} MB after the run "
        f"({growth:+.1%}, target within 5%); requests hitting an evicted adapter: {e['n']}, latency p50 "
        f"{e['latency_p50']:.2f} s, p99 {e['latency_p99']:.2f} s",
        f"\nload average before/after: {r['loadavg_before']} / {r['loadavg_after']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
