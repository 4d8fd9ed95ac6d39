"""``lorakit serve --base MODEL [--adapter NAME=DIR ...]``: the OpenAI-compatible adapter server."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorakit.errors import ConfigError

EXTRA = "lorakit serve needs the 'serve' extra: pip install 'lorakit[serve]'"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve one base model and many adapters over HTTP (OpenAI-compatible, mixed-adapter batches)",
        description="Serve a base model and its adapters: POST /v1/completions, /v1/chat/completions "
        "(the request's model field names the adapter), /v1/classify for encoder adapters, GET /v1/models, "
        "/health, /metrics. Requests with different adapters run in one batch. Settings can also come "
        "from a YAML file (keys: the long option names with _); flags override it.",
    )
    p.add_argument("config", nargs="?", type=Path, metavar="CONFIG.yaml", help="serve settings file")
    p.add_argument("--base", metavar="MODEL", help="alias (smollm2-135m, minilm-l6), model folder or .gguf")
    p.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=DIR", help="serve DIR as NAME (repeatable)"
    )
    p.add_argument(
        "--adapters-dir",
        type=Path,
        metavar="DIR",
        help="adapter folders served by folder name, loaded on first use",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1: local connections only)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, metavar="N", help="rows decoded together (default 16)")
    p.add_argument("--max-queue", type=int, metavar="N", help="waiting requests before 429 (default 256)")
    p.add_argument("--max-loaded", type=int, metavar="N", help="adapters in memory, LRU evicted (default 64)")
    p.add_argument(
        "--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (or set LORAKIT_API_KEY)"
    )
    p.add_argument(
        "--allow-runtime-loading",
        action="store_true",
        default=None,
        help="enable /v1/load_lora_adapter and /v1/unload_lora_adapter (paths under --adapters-dir)",
    )
    p.add_argument(
        "--runs", type=Path, metavar="DIR", help="training runs shown by the web page (default runs/)"
    )
    p.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--num-threads", type=int, metavar="N", help="torch threads")
    p.add_argument(
        "--packed-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="causal LMs on CPU: oneDNN-packed frozen weights, faster decoding for one more copy "
        "of them in memory (default: on)",
    )
    p.set_defaults(func=run)


def settings(args: argparse.Namespace) -> dict[str, object]:
    from lorakit.serving.config import parse_adapter_flag, read_yaml

    values: dict[str, object] = read_yaml(args.config) if args.config else {}
    for key in (
        "base",
        "adapters_dir",
        "host",
        "port",
        "max_batch",
        "max_queue",
        "max_loaded",
        "api_key",
        "allow_runtime_loading",
        "runs",
        "device",
        "num_threads",
        "packed_weights",
    ):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.adapter:
        adapters = dict(values.get("adapters") or {})  # type: ignore[call-overload]
        adapters.update(parse_adapter_flag(a) for a in args.adapter)
        values["adapters"] = adapters
    if "base" not in values:
        raise ConfigError("--base MODEL is required (or base: in the settings file)")
    return values


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA) from None
    from lorakit.serving.config import build_config
    from lorakit.serving.server import run as serve
    from lorakit.serving.state import ServerState

    config = build_config(settings(args), str(args.config or "command line"))
    return serve(ServerState(config))
