"""Driver of the adapter-loading fuzz campaign: ``python -m bench.fuzz_campaign --cases 5000``.

Cases run in child processes (``bench.fuzz_adapters``) in chunks. A child that dies without
reporting every case of its chunk has crashed on the first unreported case: that case is
counted as a crash and the chunk goes on in a fresh child from the next case. Only the standard
library is imported here, so the driver itself cannot be taken down by a native crash.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAILURES = ("silent", "other", "crash")
CASE_PREFIX = "CASE "


@dataclass
class Summary:
    """Figures of a campaign. A clean campaign has zero silent, other and crash outcomes."""

    seed: int
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    errors_by_category: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    peft: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, case: dict[str, Any]) -> None:
        self.cases += 1
        self.outcomes[case["outcome"]] += 1
        self.by_mutation.setdefault(case["mutation"], Counter())[case["outcome"]] += 1
        if case["outcome"] == "error":
            self.errors_by_category[error_category(case["detail"])] += 1
        if case.get("peft"):
            self.peft[case["peft"]] += 1
        if case["outcome"] in FAILURES:
            self.failures.append(case)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cases": self.cases,
            "outcomes": dict(self.outcomes),
            "errors_by_category": dict(self.errors_by_category.most_common()),
            "by_mutation": {k: dict(v) for k, v in sorted(self.by_mutation.items())},
            "peft": dict(self.peft),
            "failures": self.failures[:50],
            "seconds": round(self.seconds, 1),
        }


_CATEGORIES = [
    ("checksum", "checksum"),
    ("header length", "header length"),
    ("truncated", "truncated/too short"),
    ("trailing", "trailing bytes"),
    ("offsets", "data offsets"),
    ("dtype", "dtype"),
    ("shape", "shape"),
    ("rank", "rank"),
    ("scaling", "scaling"),
    ("header", "header structure"),
    ("metadata", "metadata"),
    ("different base", "base fingerprint"),
    ("not found", "missing file"),
    ("adapter_config.json", "adapter_config.json"),
    ("tensor key", "tensor keys"),
    ("tensors for", "tensor keys"),
    ("safetensors", "safetensors (other)"),
]


def error_category(message: str) -> str:
    """A coarse label for an error message, for the campaign's table."""
    if "unexpected internal error" in message:
        return "internal (caught by the safety net)"
    tail = message.split(": ", 1)[-1] if ": " in message else message
    for word, label in _CATEGORIES:
        if word in tail:
            return label
    for word, label in _CATEGORIES:
        if word in message:
            return label
    return "other"


WORKER = (sys.executable, "-m", "bench.fuzz_adapters")


def _run_chunk(
    seed: int, start: int, count: int, peft: bool, summary: Summary, worker: tuple[str, ...]
) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    while count > 0:
        cmd = [*worker, "--seed", str(seed)]
        cmd += ["--start", str(start), "--count", str(count)] + (["--peft"] if peft else [])
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        lines = proc.stdout.splitlines()
        done = [json.loads(line[len(CASE_PREFIX) :]) for line in lines if line.startswith(CASE_PREFIX)]
        for case in done:
            summary.add(case)
        start, count = start + len(done), count - len(done)
        if count > 0:
            if not done and proc.returncode == 0:
                raise RuntimeError(f"worker reported nothing: {proc.stderr[-2000:]}")
            summary.add(
                {
                    "index": start,
                    "model": "?",
                    "mutation": "?",
                    "description": f"worker died with exit status {proc.returncode}",
                    "outcome": "crash",
                    "detail": proc.stderr[-500:],
                }
            )
            start, count = start + 1, count - 1


def campaign(
    seed: int, cases: int, chunk: int = 500, peft: bool = False, worker: tuple[str, ...] = WORKER
) -> Summary:
    """Run ``cases`` cases in chunks of child processes; ``worker`` is the child's command line."""
    summary = Summary(seed)
    t0 = time.perf_counter()
    for start in range(0, cases, chunk):
        _run_chunk(seed, start, min(chunk, cases - start), peft, summary, worker)
    summary.seconds = time.perf_counter() - t0
    return summary


def report(s: Summary) -> str:
    lines = [
        f"adapter-loading fuzz campaign, seed {s.seed}: {s.cases} cases in {s.seconds:.1f} s",
        f"  identical loads (harmless mutation): {s.outcomes['identical']}",
        f"  lorakit errors raised:               {s.outcomes['error']}",
    ]
    lines += [f"      {n:6d}  {cat}" for cat, n in s.errors_by_category.most_common()]
    lines += [
        f"  silent output changes:              {s.outcomes['silent']}",
        f"  other exceptions / bad errors:      {s.outcomes['other']}",
        f"  crashes:                            {s.outcomes['crash']}",
        "  by mutation (identical / error / failures):",
    ]
    for name, c in sorted(s.by_mutation.items()):
        bad = sum(c[f] for f in FAILURES)
        lines.append(f"      {name:18s} {c['identical']:5d} / {c['error']:5d} / {bad}")
    if s.peft:
        n = sum(s.peft.values())
        changed = s.peft["changed"]
        lines.append(
            f"  PEFT on the same {n} cases: {s.peft['error']} errors, {s.peft['identical']} identical, "
            f"{changed} loaded without error and changed the output ({100 * changed / n:.1f}%)"
        )
    for f in s.failures[:20]:
        lines.append(
            f"  FAILURE #{f['index']} {f['mutation']}: {f['description']} -> {f['outcome']}: {f['detail']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz lorakit.load_adapter with damaged adapter folders.")
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=500, help="cases per child process")
    parser.add_argument("--peft", action="store_true", help="also measure PEFT on the same cases")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args(argv)
    summary = campaign(args.seed, args.cases, args.chunk, args.peft)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return 1 if any(summary.outcomes[f] for f in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
