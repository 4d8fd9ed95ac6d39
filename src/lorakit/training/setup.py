"""Everything a training run needs before its first step: data, tokenizer, model, optimizer."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lorakit.adapter_io import load_adapter
from lorakit.config import LoraConfig
from lorakit.data.batching import Feature
from lorakit.data.readers import Record
from lorakit.data.splits import load_splits
from lorakit.distributed import DistContext, ParallelStrategy, init_distributed, local_device, select_strategy
from lorakit.errors import ConfigError, DataError
from lorakit.extras import available, missing_message
from lorakit.extras import check as check_extra
from lorakit.heap import release_freed_memory
from lorakit.metrics import GENERATION_METRICS
from lorakit.model import inject
from lorakit.model_sources import ModelRef, load_tokenizer, resolve_model
from lorakit.quantized_model.quantize import QuantReport, quantize_model
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks import DEFAULT_METRIC, TASK_METRICS, Task, build_task, labels_for
from lorakit.tasks.common import feature_length, read_task_file
from lorakit.training.fast_paths import FastPaths, apply_fast_paths
from lorakit.training.optim import Schedule, build_optimizer, build_schedule


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint (JSON)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_eval_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Run:
    config: RunConfig
    ref: ModelRef
    tokenizer: Any
    task: Task
    model: nn.Module
    lora: LoraConfig
    device: torch.device
    records: dict[str, list[Record]]
    features: dict[str, list[Feature]]
    lengths: list[int]
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    total_steps: int
    batches_per_epoch: int
    metric: str
    greater_is_better: bool
    output_dir: Path
    state: TrainState = field(default_factory=TrainState)
    scaler: Any = None
    dist: DistContext = field(default_factory=DistContext)
    strategy: ParallelStrategy | None = None
    parallel_model: nn.Module | None = None
    """What training forwards call: ``model`` itself or ``CausalLMWithChunkedLoss(model)``, or the
    DDP wrapper of that (FSDP shards it in place)."""
    eval_model: nn.Module | None = None
    """What evaluation calls: ``model``, or under FSDP the sharded root (whose forward and
    ``generate`` gather the root's weights)."""
    notes: list[str] = field(default_factory=list)
    """Lines the run prints when it starts (e.g. how validation_split divided the data, a fast
    path that could not be used)."""
    last_eval: dict[str, Any] | None = None
    """The newest validation metrics with their step (summary.json's final_metrics)."""

    def autocast(self) -> contextlib.AbstractContextManager:
        precision = self.config.train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(config: RunConfig) -> torch.device:
    want = config.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available; use cpu or auto")
    if want == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device = 'mps' but MPS is not available; use cpu or auto")
    device = torch.device(want)
    precision = config.train.precision
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision = 'fp16' needs a CUDA device (this run uses {device}); use bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision = 'bf16' is not supported by this GPU; use fp16 or fp32")
    return device


def metric_choice(config: RunConfig) -> tuple[str, bool]:
    metric = config.train.metric_for_best or DEFAULT_METRIC[config.task]
    allowed = TASK_METRICS[config.task]
    if metric not in allowed:
        raise ConfigError(
            f"train.metric_for_best = {metric!r} is not a metric of task {config.task}; "
            f"allowed: {list(allowed)}"
        )
    if metric in GENERATION_METRICS and config.task == "causal_lm" and config.data.messages_field:
        raise ConfigError(
            f"train.metric_for_best = {metric!r} is computed on prompt/response data; "
            "chat records (data.messages_field) are evaluated by loss and perplexity"
        )
    greater = config.train.greater_is_better
    if greater is None:
        greater = metric not in ("loss", "perplexity")
    return metric, greater


def check_extras(config: RunConfig) -> list[str]:
    """Refuse, before anything loads, an option whose extra is missing; notes for what is skipped."""
    from lorakit.tasks.generation_eval import wanted_metrics

    needs = {
        "bleu": ("sacrebleu", "BLEU"),
        "chrf": ("sacrebleu", "chrF"),
        "rouge_l": ("rouge_score", "ROUGE-L"),
    }
    if config.task in ("causal_lm", "seq2seq"):
        for metric in wanted_metrics(config):
            if metric in needs:
                module, name = needs[metric]
                check_extra(module, f"{name} (eval.metrics / train.metric_for_best = {metric})")
        if config.task == "seq2seq" and config.eval.metrics is None and not available("sacrebleu"):
            return [f"no BLEU / chrF in the evaluations: {missing_message('sacrebleu')}"]
    if config.task == "token_classification" and (config.data.validation or config.data.validation_split):
        check_extra("seqeval", "entity scores (token_classification evaluation)")
    return []


def quantize_base(config: RunConfig, task: Task, model: nn.Module) -> QuantReport | None:
    """Quantize the frozen base as ``config.quantize`` says; the task's trainable head stays float."""
    if config.quantize is None:
        return None
    report = quantize_model(model, config.quantize.to_quant_config(task.head_modules(model)))
    release_freed_memory()  # the float weights are gone; let the resident size show it
    return report


def prepare_model(config: RunConfig, task: Task, device: torch.device) -> tuple[nn.Module, LoraConfig]:
    seed_everything(config.train.seed)  # the head's and LoRA A's initialisation
    model = task.load_model()
    quantize_base(config, task, model)  # before inject: LoRA wraps the QuantLinear layers
    lora = config.lora.with_saved_default(task.head_modules(model))
    inject(model, lora)
    if config.train.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ConfigError(f"train.gradient_checkpointing: {type(model).__name__} does not support it")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # The embeddings are frozen; without this the checkpointed blocks would see inputs
        # that need no grad and LoRA weights inside them would get none.
        model.enable_input_require_grads()
    return model.to(device), lora


ModelBuilder = Callable[[RunConfig, Task, torch.device], tuple[nn.Module, LoraConfig]]


def setup_run(config: RunConfig, build_model: ModelBuilder = prepare_model) -> Run:
    """Validate cheap things first (metric, device, data files), then load the heavy ones.

    ``build_model`` makes the model to train (default: the base with LoRA injected); benchmarks
    pass another to train PEFT's LoRA or the full model through the same loop."""
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    metric, greater = metric_choice(config)
    notes = check_extras(config)
    device = pick_device(config)
    ctx = init_distributed(device)
    device = local_device(device, ctx)
    ref = resolve_model(config.model)
    splits = load_splits(config.data, ("train", "validation"))
    train_records = splits.records["train"]
    labels = labels_for(config, train_records, splits.sources["train"])
    tokenizer = load_tokenizer(ref)
    task = build_task(config, ref, tokenizer, labels)
    features = {s: task.encode(r, splits.sources[s]) for s, r in splits.records.items()}
    if not features["train"]:
        raise DataError(f"{splits.sources['train']}: no training examples left after preprocessing")
    model, lora = build_model(config, task, device)
    # lorakit's fast paths belong to lorakit's own model; a benchmark's PEFT or full fine-tuning
    # builder trains its model as built.
    own = build_model is prepare_model
    fast = apply_fast_paths(config, task, model, features["train"], device) if own else FastPaths(model)
    t = config.train
    strategy = select_strategy(t.strategy, ctx)
    # Before the optimizer: FSDP replaces parameters.
    parallel_model = strategy.wrap(fast.train_module, device)
    lengths = [feature_length(f) for f in features["train"]]
    # Steps count global batches (batch_size x world), so epochs, max_steps and the LR schedule
    # mean what they mean for a single-process run with batch_size x world.
    batches_per_epoch = math.ceil(len(lengths) / (t.batch_size * ctx.world_size))
    total = t.max_steps or max(1, math.ceil(t.epochs * batches_per_epoch / t.grad_accum))
    scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
    return Run(
        config=config,
        ref=ref,
        tokenizer=tokenizer,
        task=task,
        model=model,
        lora=lora,
        device=device,
        records=splits.records,
        features=features,
        lengths=lengths,
        optimizer=build_optimizer(model, t),
        schedule=build_schedule(t, total),
        total_steps=total,
        batches_per_epoch=batches_per_epoch,
        metric=metric,
        greater_is_better=greater,
        output_dir=Path(config.output_dir),
        scaler=scaler,
        dist=ctx,
        strategy=strategy,
        parallel_model=parallel_model,
        eval_model=parallel_model if strategy.name == "fsdp" else model,
        notes=[*notes, *splits.notes, *fast.notes],
    )


def load_for_inference(
    config: RunConfig | None, adapter_dir: Path, quantized: bool = True
) -> tuple[Task, nn.Module, RunConfig]:
    """A task and a model with the trained adapter loaded (eval mode, nothing trainable).

    The base is quantized as in training when the config says so (eval/predict then see the
    model that was trained); ``quantized=False`` loads the float base (what merge uses)."""
    info = read_task_file(adapter_dir)
    if config is None:
        from lorakit.runconfig.yaml_io import validate_config

        config = validate_config(info["config"], source=str(adapter_dir))
    if info["task"] != config.task:
        raise ConfigError(
            f"the adapter in {adapter_dir} was trained for task {info['task']!r}, "
            f"the config says {config.task!r}"
        )
    device = pick_device(config)
    ref = resolve_model(info["model"])
    tokenizer = load_tokenizer(ref)
    task = build_task(config, ref, tokenizer, info.get("labels"))
    seed_everything(config.train.seed)
    model = task.load_model()
    if quantized:
        quantize_base(config, task, model)
    load_adapter(model, adapter_dir)
    return task, model.to(device).eval(), config
