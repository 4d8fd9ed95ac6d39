"""Incremental text: stop strings end generation and are never emitted, even in pieces."""

from __future__ import annotations

from lorakit.inference.text import TextStream


class PieceTokenizer:
    """Token id i decodes to PIECES[i]; decode concatenates (like byte-level BPE)."""

    PIECES = ("Hel", "lo", " wor", "ld", "\n\n", "###", " end", "##", "#")

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.PIECES[i] for i in ids)


def _run(ids: list[int], stop: list[str]) -> tuple[list[str], bool]:
    stream = TextStream(PieceTokenizer(), stop)
    out = []
    for i in ids:
        out.append(stream.push(i))
        if stream.stopped:
            break
    if not stream.stopped:
        out.append(stream.flush())
    return out, stream.stopped


def test_no_stop_streams_everything() -> None:
    out, stopped = _run([0, 1, 2, 3], [])
    assert "".join(out) == "Hello world" and not stopped
    assert out[:4] == ["Hel", "lo", " wor", "ld"]


def test_stop_string_inside_a_token_cuts_before_it() -> None:
    out, stopped = _run([0, 1, 2, 3], ["o w"])
    assert stopped and "".join(out) == "Hell"


def test_a_possible_stop_prefix_is_held_back_then_released() -> None:
    # "##" could start "###": held back; "#" would complete it only if it came next.
    out, stopped = _run([0, 7, 6], ["###"])
    assert not stopped and "".join(out) == "Hel## end"
    assert out[1] == ""  # "##" held while it could still become "###"
    out, stopped = _run([0, 7, 8, 6], ["###"])
    assert stopped and "".join(out) == "Hel"


def test_stop_across_tokens() -> None:
    out, stopped = _run([2, 3, 4, 6], ["ld\n"])
    assert stopped and "".join(out) == " wor"
