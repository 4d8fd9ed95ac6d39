"""Token ids to text as they come: stop strings, and never half a character or half a stop string."""

from __future__ import annotations

from typing import Any


class TextStream:
    """Decodes a growing list of token ids and hands out only text that is final.

    Text that could still become the start of a stop string, or ends in an incomplete UTF-8
    character (shown by tokenizers as U+FFFD), is held back until the next token decides it.
    """

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""
        self.stopped = False

    def _decode(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; returns the new final text (possibly ""). Sets ``stopped`` at a stop string."""
        self.ids.append(token_id)
        text = self._decode()
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.text = text[:cut]
            return self._take(len(self.text))
        self.text = text
        safe = len(text) - (1 if text.endswith("\ufffd") else 0)
        hold = 0
        for s in self.stop:  # the longest tail of the text that begins some stop string
            for k in range(min(len(s) - 1, safe), 0, -1):
                if text[safe - k : safe] == s[:k]:
                    hold = max(hold, k)
                    break
        return self._take(max(safe - hold, self.emitted))

    def _take(self, upto: int) -> str:
        out = self.text[self.emitted : upto]
        self.emitted = max(self.emitted, upto)
        return out

    def flush(self) -> str:
        """The text held back, at the end of generation."""
        return self._take(len(self.text))
