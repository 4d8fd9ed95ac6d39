"""``lorakit predict CONFIG.yaml --adapter DIR --input FILE|-``."""

from __future__ import annotations

import argparse

from lorakit.cli.common import adapter_dir, add_config_args, config_from_args, print_json, read_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a trained adapter: labels with probabilities, token tags, or generated text",
        description="Reads records from a data file or stdin ('-': JSON objects or plain text lines, "
        "one per line) and writes one JSON object per input line to stdout.",
    )
    add_config_args(p, optional=True)
    p.add_argument("--adapter", metavar="DIR", help="adapter folder (default: <output_dir>/adapter)")
    p.add_argument("--input", required=True, metavar="FILE|-", help="data file, or - for stdin")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorakit.training.setup import load_for_inference

    config = config_from_args(args)
    task, model, config = load_for_inference(config, adapter_dir(args, config))
    d = config.data
    field = {
        "classification": d.text_field,
        "token_classification": d.tokens_field,
        "causal_lm": d.prompt_field,
        "seq2seq": d.source_field,
    }[config.task]
    records = read_input(args.input, field)
    if config.task == "token_classification":
        records = [{**r, field: r[field].split()} if isinstance(r.get(field), str) else r for r in records]
    for record, pred in zip(records, task.predict(model, records), strict=True):
        print_json({"input": record.get(field), **pred})
    return 0
