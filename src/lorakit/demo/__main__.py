"""The main job on the built-in default: fine-tune minilm-l6 with LoRA on the bundled topic
dataset, evaluate before and after, and show the improvement (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from lorakit.cli import main as cli_main
from lorakit.demo.dataset import write_topics
from lorakit.errors import LorakitError
from lorakit.runconfig.yaml_io import validate_config
from lorakit.training.reporting import read_metrics

REPO_DATA = Path(__file__).resolve().parents[3] / "examples" / "data" / "topics"
SAMPLES = [
    "The goalkeeper saved a penalty in the last minute of the cup final.",
    "The company unveiled a laptop with a faster graphics chip.",
    "She slow-cooked a beef stew with carrots and red wine.",
    "We took the ferry to the islands and stayed in a small guesthouse.",
]


def demo_config(data: Path, output_dir: Path, max_steps: int | None) -> dict:
    return {
        "model": "minilm-l6",
        "task": "classification",
        "data": {
            "train": str(data / "train.jsonl"),
            "validation": str(data / "validation.jsonl"),
            "max_length": 40,
            "max_eval_samples": 200,
        },
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["query", "value"]},
        "train": {
            "epochs": 1,
            "max_steps": max_steps or 50,
            "batch_size": 16,
            "lr": 2e-3,
            "warmup_ratio": 0.1,
            "eval_every": 25,
            "save_every": 25,
            "log_every": 5,
            "eval_at_start": True,
            "seed": 0,
            "metric_for_best": "loss",
        },
        "output_dir": str(output_dir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorakit.demo", description=__doc__)
    parser.add_argument("--output-dir", default="runs/demo", help="where the run goes (default runs/demo)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 50)")
    args = parser.parse_args(argv)
    data = REPO_DATA
    if not (data / "train.jsonl").is_file():  # installed without the repo: regenerate the same files
        data = Path(args.output_dir) / "data"
        write_topics(data)
    out = Path(args.output_dir)
    cfg_path = out.parent / f"{out.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    cfg = demo_config(data, out, args.max_steps)
    validate_config(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(
        f"lorakit demo: LoRA on minilm-l6, 4-topic classification ({data}), config {cfg_path}; "
        f"an earlier demo run in {out} is replaced\n",
        flush=True,
    )
    t0 = time.perf_counter()
    code = cli_main(["train", str(cfg_path), "--overwrite"])
    if code != 0:
        return code
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "eval"]
    before, after = evals[0], min(evals, key=lambda r: r["loss"])
    print(
        "\nvalidation accuracy: before training {:.1%} -> after {:.1%} (best step {}), "
        "macro-F1 {:.3f} -> {:.3f}".format(
            before["accuracy"], after["accuracy"], after["step"], before["macro_f1"], after["macro_f1"]
        )
    )
    print(f"total demo time {time.perf_counter() - t0:.0f} s\n\npredictions on new sentences:", flush=True)
    samples = out / "samples.txt"
    samples.write_text("\n".join(SAMPLES) + "\n")
    sys.stdin = open(samples)  # noqa: SIM115 - predict reads stdin like the CLI would
    code = cli_main(["predict", str(cfg_path), "--input", "-"])
    print(
        f"\nadapter: {out / 'adapter'}  plots: {out / 'plots'}\n"
        f"try: {lorakit_command()} merge --adapter {out / 'adapter'} "
        f"--out {out / 'merged'}"
    )
    return code


def lorakit_command() -> str:
    """How to call lorakit from the user's shell: ``lorakit`` when it is on PATH, otherwise the
    script next to this Python (e.g. ``.venv/bin/lorakit`` when the venv is not activated)."""
    script = Path(sys.executable).parent / "lorakit"
    found = shutil.which("lorakit")
    if found and Path(found).resolve() == script.resolve():
        return "lorakit"
    if script.is_file():
        return os.path.relpath(script) if not os.path.relpath(script).startswith("..") else str(script)
    return f"{sys.executable} -m lorakit"


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except LorakitError as e:
        print(f"lorakit demo: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
