"""What the generative tasks (causal_lm, seq2seq) share: predictions by generation, and the
metrics on generated text during evaluation (which ones, and the prompts they are computed on,
each prompt once with every target it has as a reference)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lorakit.data.readers import Record, require_field
from lorakit.extras import available
from lorakit.metrics import GENERATION_METRICS, generation_scores, group_references
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import generate

DEFAULT_GENERATION_METRICS = {"seq2seq": ["bleu", "chrf"], "causal_lm": []}


def wanted_metrics(config: RunConfig) -> list[str]:
    """eval.metrics (or the task's default), plus train.metric_for_best when it is generated."""
    chosen = config.eval.metrics
    if chosen is not None:
        wanted = list(chosen)
    else:  # the defaults need sacrebleu (the `metrics` extra); without it they are left out
        wanted = list(DEFAULT_GENERATION_METRICS.get(config.task, [])) if available("sacrebleu") else []
    best = config.train.metric_for_best
    if best in GENERATION_METRICS and best not in wanted:
        wanted.append(best)
    return wanted


def generation_metrics(
    config: RunConfig,
    records: list[Record],
    prompt_field: str,
    target_field: str,
    predict: Callable[[list[Record]], list[dict[str, Any]]],
) -> dict[str, Any]:
    """Generate once for each of the first eval.max_eval_samples distinct prompts (batched by
    ``predict``) and score against all references of that prompt."""
    wanted = wanted_metrics(config)
    if not wanted or not records:
        return {}
    prompts = [str(r[prompt_field]) for r in records]
    targets = [str(r[target_field]).strip() for r in records]
    firsts, refs = group_references(prompts, targets, config.eval.max_eval_samples)
    hyps = [p["generated"] for p in predict([records[i] for i in firsts])]
    return generation_scores(hyps, refs, wanted)


def predict_by_generation(
    model: nn.Module,
    tokenizer: Any,
    config: RunConfig,
    records: list[Record],
    field: str,
    encode: Callable[[str], list[int]],
) -> list[dict[str, Any]]:
    """``{"generated": text}`` per record: its ``field`` encoded as the prompt, then generated
    with the eval section's length and beams, in batches of the eval batch size."""
    prompts = [encode(str(require_field(r, field, "input", i))) for i, r in enumerate(records)]
    e = config.eval
    bs = config.train.eval_batch_size or config.train.batch_size
    texts = generate(model, tokenizer, prompts, e.max_new_tokens, e.num_beams, bs)
    return [{"generated": t} for t in texts]
