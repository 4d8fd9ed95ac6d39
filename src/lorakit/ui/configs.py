"""Side-by-side view of run configs: each config flattened to dotted keys, rows that differ marked."""

from __future__ import annotations

from typing import Any

MISSING = {"missing": True}
"""Stands for a key that one config does not have (distinct from an explicit null)."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"lora": {"r": 8}}`` -> ``{"lora.r": 8}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(configs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Rows ``{"key", "values": [one per run, in order], "differs"}`` over the union of keys.

    ``configs`` maps run id -> parsed config.yaml (None when the run has none). Keys are sorted,
    so the same setting lines up across runs; a key absent from a run shows as ``MISSING``.
    """
    flat = {run_id: flatten(cfg) if cfg else {} for run_id, cfg in configs.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values()))) if flat else []
    rows = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat.values()]
        differs = any(v != values[0] for v in values[1:])
        rows.append({"key": key, "values": values, "differs": differs})
    return {
        "runs": list(configs),
        "missing_config": [run_id for run_id, cfg in configs.items() if not cfg],
        "rows": rows,
        "differing": sum(r["differs"] for r in rows),
    }
