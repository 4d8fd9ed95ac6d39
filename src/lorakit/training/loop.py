"""The training loop: setup -> loop -> evaluate -> checkpoint -> adapter and summary.

``train(config)`` is the one entry point (CLI, sweeps, data-parallel launchers). Batches are
drawn in one place (``draw_steps``) and every file is written through ``Reporter`` /
``write_*`` helpers guarded by ``is_main``, so a data-parallel mode can shard the former and
silence the latter.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lorakit.adapter_io import adapter_payload, write_adapter
from lorakit.data.batching import epoch_batches
from lorakit.distributed import all_reduce_sums, broadcast_flag, shard_batches, shutdown_distributed
from lorakit.errors import LorakitError, TrainingDiverged, TrainingInterrupted
from lorakit.extras import available
from lorakit.heap import trim_heap
from lorakit.layers.gemm import matmul_backend
from lorakit.quantized_model.quantize import quantized_modules
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import save_config
from lorakit.summary import trainable_summary
from lorakit.training.checkpoint import list_checkpoints, restore_checkpoint, save_checkpoint
from lorakit.training.drift import check_resume_base, check_resume_config
from lorakit.training.plots import write_plots
from lorakit.training.recovery import clean_leftovers
from lorakit.training.reporting import METRICS_FILE, Reporter, last_eval_row
from lorakit.training.run_folder import (
    BEST_DIR,
    check_output_dir,
    clear_run_outputs,
    complete_adapter_folder,
    interrupted_report,
    missing_outputs,
)
from lorakit.training.setup import Run, TrainState, setup_run


def train(config: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Train an adapter as ``config`` says; returns the summary also written to summary.json.

    An ``output_dir`` that holds another run's results is refused (``RunExistsError``) unless
    ``overwrite`` (its outputs are cleared first) or ``config.resume == "auto"`` with a
    checkpoint to continue from. A run that fails after setup (NaN/Inf loss:
    ``TrainingDiverged``; anything else) still writes summary.json with status "failed" and
    ``error`` before the exception propagates; Ctrl-C raises ``TrainingInterrupted``, whose text
    says what was kept and how to finish.

    Under torchrun every rank calls this; rank 0 alone writes files and prints.
    """
    try:
        with matmul_backend(config.train.matmul_backend):
            return _train(config, overwrite)
    finally:
        shutdown_distributed()


def _train(config: RunConfig, overwrite: bool) -> dict[str, Any]:
    start = time.perf_counter()
    check_output_dir(config, overwrite)  # before anything heavy loads
    allowed_changes = check_resume_config(config)
    run = setup_run(config)
    is_main = run.dist.is_main
    reporter = Reporter(run.output_dir, is_main)
    leftovers: list[str] = []
    if is_main:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        leftovers = clean_leftovers(run.output_dir)
    resumed = maybe_resume(run)
    if not resumed and is_main:
        cleared = clear_run_outputs(run.output_dir)
        if overwrite and cleared:
            reporter.say(f"--overwrite: removed {', '.join(cleared)} of the earlier run in {run.output_dir}")
    if is_main:
        save_config(config, run.output_dir / "config.yaml")
    reporter.start(run.state.step, run.total_steps)
    for note in [*run.notes, *missing_outputs()]:
        reporter.say(note)
    if leftovers:
        reporter.say(f"removed {len(leftovers)} leftover(s) of an interrupted run: {', '.join(leftovers)}")
    if resumed:
        reporter.say(f"resumed from {resumed} (step {run.state.step})")
        for change in allowed_changes:
            reporter.say(f"resume_allow_changes: {change}")
    status, error = "completed", None
    try:
        status = training_loop(run, reporter)
        write_final_adapter(run)
    except KeyboardInterrupt:
        if reporter.bar is not None:
            reporter.bar.close()
        raise TrainingInterrupted(interrupted_report(run)) from None
    except TrainingDiverged as e:
        status, error = "failed", str(e)
    except Exception as e:
        failed = build_summary(
            run, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - start, resumed
        )
        reporter.finish(failed)
        raise
    summary = build_summary(run, status, error, time.perf_counter() - start, resumed)
    reporter.finish(summary)
    if is_main and available("matplotlib"):
        try:
            write_plots(run.output_dir, run.metric)
        except Exception as e:  # a plotting failure must not lose a finished run
            reporter.say(f"warning: could not write plots ({e})")
    if error:
        raise TrainingDiverged(error)
    return summary


def maybe_resume(run: Run) -> Path | None:
    if run.config.resume != "auto":
        return None
    found = list_checkpoints(run.output_dir / "checkpoints")
    if not found:
        return None
    check_resume_base(found[-1], adapter_payload(run.model).metadata, run.config)
    state = restore_checkpoint(found[-1], run.model, run.optimizer)
    run.state = TrainState(**state["train_state"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    return found[-1]


def draw_steps(run: Run) -> Iterator[list[list[int]]]:
    """Global micro-batches (batch_size x world) of each optimizer step, continuing from the
    saved data position; ``train_step`` runs this rank's piece of each."""
    t = run.config.train
    state = run.state
    size = t.batch_size * run.dist.world_size
    epoch, pos = state.epoch, state.batch_in_epoch
    while True:
        batches = epoch_batches(run.lengths, size, t.seed, epoch, t.group_by_length)
        step: list[list[int]] = []
        while len(step) < t.grad_accum:
            if pos >= len(batches):
                epoch, pos = epoch + 1, 0
                batches = epoch_batches(run.lengths, size, t.seed, epoch, t.group_by_length)
            step.append(batches[pos])
            pos += 1
        state.epoch, state.batch_in_epoch = epoch, pos
        yield step


def training_loop(run: Run, reporter: Reporter) -> str:
    t = run.config.train
    run.model.train()
    if t.eval_at_start and run.state.step == 0:
        evaluate(run, reporter)
    steps = draw_steps(run)
    window: list[float] = []
    while run.state.step < run.total_steps:
        lr = run.schedule.apply(run.optimizer, run.state.step)
        loss = train_step(run, next(steps), reporter)
        trim_heap()  # batches of varying length fragment the heap; keep RSS near the live size
        run.state.step += 1
        window.append(loss)
        rates = reporter.progress(loss, lr)
        step = run.state.step
        if step % t.log_every == 0 or step == run.total_steps:
            reporter.log(
                step,
                "train",
                {
                    "loss": sum(window) / len(window),
                    "lr": lr,
                    **rates,
                    "epoch": round(step * t.grad_accum / run.batches_per_epoch, 4),
                },
            )
            window = []
        stop = False
        if has_validation(run) and ((t.eval_every and step % t.eval_every == 0) or step == run.total_steps):
            stop = evaluate(run, reporter)
        # collective: every rank gathers, rank 0 writes. The last step always gets one, so a
        # finished run can be continued (train longer) and max_steps < save_every still saves.
        if t.save_every and (step % t.save_every == 0 or step == run.total_steps):
            checkpoint(run)
        if stop:
            reporter.say(
                f"early stopping at step {step}: no improvement in {t.early_stopping_patience} evaluations"
            )
            return "stopped_early"
    return "completed"


def train_step(run: Run, micro_batches: list[list[int]], reporter: Reporter) -> float:
    """One optimizer step over ``micro_batches`` (gradient accumulation); returns the mean loss.

    Each rank runs its piece of every global micro-batch; gradients are averaged over ranks once,
    at the last micro-batch (DDP no_sync / FSDP gradient sync off before it).
    """
    features = run.features["train"]
    shards = shard_batches(micro_batches, run.dist.rank, run.dist.world_size)
    total = samples = tokens = 0.0
    for k, shard in enumerate(shards):
        idx = shard.indices
        batch = {key: v.to(run.device) for key, v in run.task.collate([features[i] for i in idx]).items()}
        with run.strategy.accumulating(run.parallel_model, sync=k == len(shards) - 1):
            with run.autocast():
                loss = run.parallel_model(**batch).loss
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss is {float(loss.detach())} at step {run.state.step + 1} "
                    f"(micro-batch {k + 1}); "
                    f"training stopped. Last good checkpoint: {last_checkpoint(run)}. "
                    "Try a lower train.lr, train.max_grad_norm, or precision fp32."
                )
            scaled = loss * shard.loss_scale / len(shards)
            (run.scaler.scale(scaled) if run.scaler else scaled).backward()
        total += float(loss.detach()) * shard.loss_scale / len(shards)
        if shard.loss_scale:
            mask = batch.get("attention_mask")
            samples += len(idx)
            tokens += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    sums = all_reduce_sums({"loss": total, "samples": samples, "tokens": tokens}, run.device)
    reporter.count(int(sums["samples"]), int(sums["tokens"]))
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    if run.config.train.max_grad_norm:
        norm = torch.nn.utils.clip_grad_norm_(params, run.config.train.max_grad_norm)
        if run.scaler is None and not torch.isfinite(norm):  # the fp16 scaler skips such steps itself
            raise TrainingDiverged(
                f"the gradient norm is {float(norm)} at step {run.state.step + 1}; training stopped "
                f"before the update. Last good checkpoint: {last_checkpoint(run)}."
            )
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return sums["loss"] / run.dist.world_size


def has_validation(run: Run) -> bool:
    return bool(run.features.get("validation"))


def evaluate(run: Run, reporter: Reporter) -> bool:
    """Evaluate on validation, keep the best adapter; True when early stopping should stop."""
    state = run.state
    with run.autocast():
        metrics = run.task.evaluate(run.eval_model, run.records["validation"], run.features["validation"])
    trim_heap()  # evaluation batches (2 x batch_size) leave freed pages resident otherwise
    run.model.train()
    state.last_eval_step = state.step
    run.last_eval = {"step": state.step, **metrics}
    value = metrics[run.metric]
    improved = state.best_metric is None or (
        value > state.best_metric if run.greater_is_better else value < state.best_metric
    )
    if improved:
        state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
        if run.config.train.keep_best:
            save_adapter_from_main(run, run.output_dir / BEST_DIR)
    else:
        state.evals_without_improvement += 1
    reporter.log(state.step, "eval", metrics)
    reporter.eval_table(state.step, "validation", metrics, improved)
    patience = run.config.train.early_stopping_patience
    return patience is not None and state.evals_without_improvement >= patience


def last_checkpoint(run: Run) -> str:
    found = list_checkpoints(run.output_dir / "checkpoints")
    return str(found[-1]) if found else "none"


def task_info(run: Run) -> dict[str, Any]:
    return {
        "task": run.config.task,
        "model": run.ref.name,
        "labels": run.task.labels,
        "config": run.config.model_dump(mode="json"),
    }


def save_adapter_from_main(run: Run, folder: Path) -> None:
    """Every rank gathers (FSDP shards are collected from all ranks); rank 0 writes a complete
    adapter folder: weights, tokenizer and lorakit_task.json (tokenizer and task file first, so
    the weights' arrival is the last step)."""
    payload = adapter_payload(run.model, base_model_name=run.ref.name)
    if run.dist.is_main:
        complete_adapter_folder(folder, run.tokenizer, task_info(run))
        write_adapter(payload, folder)


def checkpoint(run: Run) -> None:
    state = {
        "train_state": run.state.to_dict(),
        "schedule": run.schedule.state(),
        "config": run.config.model_dump(mode="json"),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,  # fp16 loss scale
    }
    save_checkpoint(
        run.output_dir / "checkpoints",
        run.state.step,
        run.model,
        run.optimizer,
        state,
        run.config.train.keep_checkpoints,
        is_main=run.dist.is_main,
        complete_adapter=lambda folder: complete_adapter_folder(folder, run.tokenizer, task_info(run)),
    )


def write_final_adapter(run: Run) -> None:
    """adapter/: the best evaluated adapter (or the final one) with tokenizer and task info."""
    is_main = run.dist.is_main
    out = run.output_dir / "adapter"
    tmp = run.output_dir / ".adapter.tmp"
    best = run.output_dir / BEST_DIR
    # Rank 0's file system decides, so that every rank takes the same (collective) branch.
    has_best = run.config.train.keep_best and run.state.best_step is not None and best.is_dir()
    use_best = broadcast_flag(is_main and has_best, run.device)
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    if use_best and is_main:
        shutil.copytree(best, tmp)
    elif not use_best:
        save_adapter_from_main(run, tmp)
    if not is_main:
        return
    complete_adapter_folder(tmp, run.tokenizer, task_info(run))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build_summary(
    run: Run, status: str, error: str | None, wall: float, resumed: Path | None
) -> dict[str, Any]:
    s = trainable_summary(run.model)
    summary: dict[str, Any] = {
        "status": status,
        "best_metric": run.state.best_metric,
        "metric_for_best": run.metric,
        "best_step": run.state.best_step,
        "final_step": run.state.step,
        "trainable_params": s.trainable,
        "total_params": s.total,
        "trainable_percent": round(s.percent, 4),
        "wall_time_s": round(wall, 2),
        "peak_memory_mb": round(peak_memory_mb(run.device), 1),
        "task": run.config.task,
        "model": run.ref.name,
        "train_examples": len(run.features["train"]),
        "resumed_from": str(resumed) if resumed else None,
        "quantize": run.config.quantize.method if run.config.quantize else None,
        # Every metric of the last evaluation (signatures, per-type scores, confusion matrix).
        "final_metrics": run.last_eval or last_eval_row(run.output_dir / METRICS_FILE),
    }
    if run.config.quantize:
        stored = sum(m.storage.nbytes() for _, m in quantized_modules(run.model))
        summary["quantized_weight_mb"] = round(stored / 2**20, 2)
    if error:
        summary["error"] = error
    if summary["best_metric"] is not None and not math.isfinite(summary["best_metric"]):
        summary["best_metric"] = None
    return summary


def read_summary(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "summary.json"
    if not path.is_file():
        raise LorakitError(f"{path} not found")
    return json.loads(path.read_text())


__all__ = ["read_summary", "train"]
