"""``lorakit generate [CONFIG.yaml] --adapter DIR --prompt TEXT``: causal LM generation."""

from __future__ import annotations

import argparse

from lorakit.cli.common import adapter_dir, add_config_args, config_from_args, read_stdin_text, utf8_text
from lorakit.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text from a prompt with a causal LM (or seq2seq) adapter",
        description="Generate a continuation for each --prompt (or each stdin line with --prompt -). "
        "The prompt is formatted as in training (chat template or data.prompt_template).",
    )
    add_config_args(p, optional=True)
    p.add_argument("--adapter", metavar="DIR", help="adapter folder (default: <output_dir>/adapter)")
    p.add_argument(
        "--prompt",
        action="append",
        required=True,
        type=utf8_text,
        metavar="TEXT",
        help="prompt text (repeatable; - reads stdin lines)",
    )
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="override eval.max_new_tokens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorakit.training.setup import load_for_inference

    config = config_from_args(args)
    task, model, config = load_for_inference(config, adapter_dir(args, config))
    if config.task not in ("causal_lm", "seq2seq"):
        raise ConfigError(f"generate needs a causal_lm or seq2seq adapter; this one is {config.task}")
    if args.max_new_tokens:
        config.eval.max_new_tokens = args.max_new_tokens
    prompts: list[str] = []
    for p in args.prompt:
        prompts += [line for line in read_stdin_text().splitlines() if line.strip()] if p == "-" else [p]
    field = config.data.prompt_field if config.task == "causal_lm" else config.data.source_field
    for prompt, pred in zip(prompts, task.predict(model, [{field: p} for p in prompts]), strict=True):
        print(f"### prompt\n{prompt}\n### output\n{pred['generated']}\n")
    return 0
