"""Placeholder removed once the core suite lands: the public API imports."""

import lorakit


def test_public_api_names() -> None:
    for name in ["LoraConfig", "inject", "save_adapter", "load_adapter", "merge", "unmerge",
                 "merge_and_unload", "unload", "add_adapter", "set_adapter", "delete_adapter",
                 "disable_adapters", "trainable_summary", "find_targets"]:
        assert callable(getattr(lorakit, name)), name
