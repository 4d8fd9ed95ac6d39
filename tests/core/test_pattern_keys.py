"""rank_pattern / alpha_pattern keys: the indexed lookup gives what trying every key in order gives."""

from __future__ import annotations

import random

from lorakit.config import _key_applies, match_pattern_key


def _in_order(patterns: dict[str, int], name: str) -> str | None:
    return next((k for k in patterns if _key_applies(k, name)), None)


def test_lookup_equals_trying_every_key_in_order() -> None:
    rnd = random.Random(0)
    parts = ["model", "layers", "0", "1", "11", "self_attn", "q_proj", "k_proj", "v", "proj"]
    regexes = ["q_proj|v_proj", r".*\.1\.q_proj", "layers.1.*", "(q|k)_proj", "[", "a+"]
    for _ in range(400):
        names = [".".join(rnd.choice(parts) for _ in range(rnd.randint(1, 5))) for _ in range(8)]
        names += ["".join(rnd.choice("ab._1q") for _ in range(rnd.randint(1, 6))) for _ in range(3)]
        keys: dict[str, int] = {}
        for _ in range(rnd.randint(1, 8)):
            roll = rnd.random()
            if roll < 0.2:
                key = rnd.choice(regexes)
            elif roll < 0.5:
                key = rnd.choice(names)  # a full module name, as a loaded adapter pins them
            else:
                key = ".".join(rnd.choice([*parts, "q.proj", "x"]) for _ in range(rnd.randint(1, 3)))
            keys[key] = 1
        for name in names:
            assert match_pattern_key(keys, name) == _in_order(keys, name), (keys, name)


def test_first_key_in_order_wins_and_dots_are_regex_dots() -> None:
    pinned = {f"model.layers.{i}.self_attn.q_proj": i for i in range(12)}
    assert match_pattern_key(pinned, "model.layers.11.self_attn.q_proj") == "model.layers.11.self_attn.q_proj"
    assert match_pattern_key(pinned, "model.layers.12.self_attn.q_proj") is None
    assert match_pattern_key({"q_proj": 1, **pinned}, "model.layers.3.self_attn.q_proj") == "q_proj"
    # as a regex "q.proj" matches "q_proj": a dot is any character
    assert match_pattern_key({"q.proj": 1}, "model.q_proj") == "q.proj"
    assert match_pattern_key({"q.proj": 1}, "model.xq_proj") is None
