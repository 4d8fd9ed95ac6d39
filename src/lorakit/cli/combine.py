"""``lorakit combine --adapter A=0.7 --adapter B=0.3 --method cat|linear|svd --base M --out DIR``.

Loads every adapter onto one float base model (the file fingerprints prove they belong to it),
builds the weighted combination with ``add_weighted_adapter`` and writes it as a PEFT-compatible
adapter folder, with the tokenizer and task info of the inputs so eval/predict/merge accept it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from torch import nn

from lorakit.cli.common import check_new_folder, print_json, staged_folder
from lorakit.errors import AdapterFileError, ConfigError
from lorakit.runconfig.schema import RunConfig

# PEFT's task_type for adapters without lorakit's task file.
PEFT_TASKS = {"CAUSAL_LM": "causal_lm", "SEQ_2_SEQ_LM": "seq2seq"}
COMBINED = "combined"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "combine",
        help="combine adapters of the same base into one (weighted: cat, linear or svd)",
        description="Writes one adapter folder holding sum_i w_i * delta_i: exactly with --method cat "
        "(ranks add), as PEFT's 'linear' (equal ranks, not an exact sum), or as its best rank-R "
        "approximation with --method svd (the relative error is printed). Adapters with "
        "modules_to_save (classification heads) and DoRA adapters cannot be combined.",
    )
    p.add_argument(
        "--adapter",
        action="append",
        required=True,
        metavar="DIR=WEIGHT",
        help="an adapter folder and its weight, e.g. runs/a/adapter=0.7 (repeat for each adapter)",
    )
    p.add_argument("--method", choices=("cat", "linear", "svd"), default="cat", help="default: cat")
    p.add_argument(
        "--rank", type=int, metavar="R", help="rank of the svd result (default: largest input rank)"
    )
    p.add_argument(
        "--base",
        required=True,
        metavar="MODEL_OR_CONFIG",
        help="the base model (dir, .gguf, alias) or a run config YAML naming it",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    p.set_defaults(func=run)


def parse_weights(specs: list[str]) -> list[tuple[Path, float]]:
    out = []
    for spec in specs:
        path, sep, raw = spec.rpartition("=")
        if not sep or not path:
            raise ConfigError(f"--adapter {spec!r}: expected DIR=WEIGHT, e.g. runs/a/adapter=0.5")
        try:
            weight = float(raw)
        except ValueError:
            raise ConfigError(f"--adapter {spec!r}: weight {raw!r} is not a number") from None
        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise AdapterFileError(f"--adapter {spec!r}: {folder} is not an adapter folder")
        out.append((folder, weight))
    return out


def adapter_info(folder: Path) -> dict[str, Any]:
    """lorakit's task info of an adapter, or what its PEFT config says (task from task_type)."""
    from lorakit.tasks.common import TASK_FILE, read_task_file

    raw = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise AdapterFileError(f"{folder}/adapter_config.json: expected a JSON object")
    if raw.get("use_dora"):
        raise ConfigError(f"--adapter {folder}: DoRA adapters cannot be combined (magnitudes do not add)")
    if raw.get("modules_to_save"):
        raise ConfigError(
            f"--adapter {folder}: it trains modules_to_save {raw['modules_to_save']} (e.g. a classifier "
            "head) fully; those are not low-rank updates and cannot be combined"
        )
    if (folder / TASK_FILE).is_file():
        return read_task_file(folder)
    return {"task": PEFT_TASKS.get(str(raw.get("task_type"))), "model": raw.get("base_model_name_or_path")}


def base_config(spec: str, infos: list[dict[str, Any]]) -> RunConfig:
    """The run config that builds the base: --base as YAML, or the inputs' task with --base as model."""
    from lorakit.runconfig.yaml_io import load_config, validate_config

    tasks = {i["task"] for i in infos if i["task"]}
    if len(tasks) > 1:
        raise ConfigError(f"the adapters were trained for different tasks: {sorted(map(str, tasks))}")
    if spec.endswith((".yaml", ".yml")):
        config = load_config(spec)
        if tasks and config.task not in tasks:
            raise ConfigError(f"--base {spec} is for task {config.task!r}, the adapters for {tasks.pop()!r}")
        return config
    task = tasks.pop() if tasks else None
    if task is None:
        raise ConfigError("cannot tell the adapters' task; pass --base CONFIG.yaml (a run config)")
    data = next((i["config"] for i in infos if "config" in i), {"task": task})
    return validate_config({**data, "model": spec, "quantize": None}, source=f"--base {spec}")


def load_all(
    config: RunConfig, adapters: list[tuple[Path, float]]
) -> tuple[Any, nn.Module, dict[str, float]]:
    """Task and float base model with every adapter loaded (as a0, a1, ...); returns the weights."""
    from lorakit.adapter_io import load_adapter
    from lorakit.model_sources import load_tokenizer, resolve_model
    from lorakit.tasks import build_task

    ref = resolve_model(config.model)
    task = build_task(config, ref, load_tokenizer(ref), None)
    model = task.load_model()
    weights = {}
    for i, (folder, weight) in enumerate(adapters):
        try:
            load_adapter(model, folder, f"a{i}")
        except AdapterFileError as e:
            raise AdapterFileError(f"--adapter {folder} does not fit --base {config.model}: {e}") from None
        weights[f"a{i}"] = weight
    return task, model, weights


def report_lines(report: Any) -> list[str]:
    ranks = sorted(set(report.ranks.values()))
    lines = [f"combined rank per module: {ranks[0]}..{ranks[-1]}" if len(ranks) > 1 else f"rank {ranks[0]}"]
    if report.method == "svd":
        worst = max(report.module_errors.items(), key=lambda kv: kv[1])
        lines.append(
            f"svd relative error ||D - D_r||_F / ||D||_F: {report.relative_error:.4e} over all modules "
            f"(worst {worst[0]}: {worst[1]:.4e})"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from lorakit.adapter_io import save_adapter
    from lorakit.arithmetic import add_weighted_adapter
    from lorakit.tasks.common import write_task_file

    out = Path(args.out)
    check_new_folder(out)
    adapters = parse_weights(args.adapter)
    infos = [adapter_info(folder) for folder, _ in adapters]
    config = base_config(args.base, infos)
    task, model, weights = load_all(config, adapters)
    report = add_weighted_adapter(model, weights, COMBINED, method=args.method, svd_rank=args.rank)
    labels = next((i.get("labels") for i in infos if i.get("labels")), None)
    with staged_folder(out) as tmp:
        save_adapter(model, tmp, COMBINED, base_model_name=task.ref.name)
        task.tokenizer.save_pretrained(str(tmp))
        write_task_file(
            tmp,
            {
                "task": config.task,
                "model": task.ref.name,
                "labels": labels,
                "config": config.model_dump(mode="json"),
            },
        )
    for line in [f"{args.method} of {len(weights)} adapters", *report_lines(report), f"wrote {out}"]:
        print(line, file=sys.stderr)
    print_json(
        {
            "method": args.method,
            "relative_error": report.relative_error,
            "out": str(out),
            "ranks": sorted(set(report.ranks.values())),
        }
    )
    return 0
