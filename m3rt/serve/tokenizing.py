"""How many characters are being tokenized at once, server-wide.

The tokenizer's working memory grows with the characters it reads (a few hundred bytes each), and the runtime
reads up to its window cap of a text that holds few tokens (emoji sequences, combining marks). Runs of texts
are therefore let in while the characters in the tokenizer stay within `limit`: a run that would pass it waits
for the runs before it, in arrival order, so that several big texts are tokenized one after another, not
together. Used from the event loop only: no lock.
"""

from __future__ import annotations

import asyncio
from collections import deque


class CharGate:
    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()

    def enter(self, chars: int) -> asyncio.Future:
        """A future done when a run of `chars` characters may start (a run over `limit` starts alone).
        Once done, the caller owes leave(chars); cancelled before that, it owes nothing."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((chars, turn))
        self._admit()
        return turn

    def leave(self, chars: int) -> None:
        self.used -= chars
        self._admit()

    def _admit(self) -> None:
        while self._waiting:
            chars, turn = self._waiting[0]
            if turn.cancelled():
                self._waiting.popleft()
                continue
            if self.used and self.used + chars > self.limit:
                return
            self._waiting.popleft()
            self.used += chars
            turn.set_result(None)
