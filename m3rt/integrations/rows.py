"""The texts a vector-store integration inserts, paired with their ids and checked as they are read: one id per
text (given, or first_id, first_id + 1, ...), of the store's kind, none repeated within one insert (a repeat
would store one row and count two), the text's bytes within the store's field. Lists are checked whole before
anything is written; streams as they are read, before the chunk holding the problem is written."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized


class PairedRows:
    def __init__(self, texts: Iterable[str], ids: Iterable | None, first_id: int, id_of: Callable[[object, str], object],
                 max_text_bytes: int | None = None):
        """id_of(value, "ids[i]"): the store's id for a given id (raising TypeError / ValueError naming it)."""
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}")
        if isinstance(ids, Sized) and isinstance(texts, Sized) and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts: give one id per text")
        self.texts, self.ids, self.id_of, self.max_text_bytes = texts, ids, id_of, max_text_bytes
        self.pending: deque = deque()  # (id, text) read, not written yet: at most a few chunks
        self.seen: set = set()
        if isinstance(ids, Sequence) and not isinstance(ids, (str, bytes)):
            self.seen = set()
            for i, value in enumerate(ids):
                self._new_id(value, i)
            self.seen = set()  # counted again as they are read
        self.source = itertools.count(int(first_id)) if ids is None else iter(ids)

    def _new_id(self, value, i: int):
        row_id = self.id_of(value, f"ids[{i}]")
        if row_id in self.seen:
            raise ValueError(f"ids[{i}] = {row_id!r} repeats an earlier id of this insert: give each text its own id")
        self.seen.add(row_id)
        return row_id

    def read(self) -> Iterator[str]:
        """The texts, for the runtime to encode; each with its id in `pending` until taken."""
        for i, text in enumerate(self.texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            if self.max_text_bytes is not None and len(text.encode("utf-8")) > self.max_text_bytes:
                raise ValueError(f"texts[{i}] is {len(text.encode('utf-8'))} bytes in UTF-8; the collection's text "
                                 f"field holds at most {self.max_text_bytes}")
            value = next(self.source, None)
            if value is None:
                raise ValueError(f"ids ran out at texts[{i}]: give one id per text")
            self.pending.append((self._new_id(value, i), text))
            yield text
        if self.ids is not None and next(self.source, None) is not None:  # before the last chunk is written
            raise ValueError(f"more ids than texts ({len(self.seen)}): give one id per text")

    def take(self, n: int) -> list[tuple]:
        """The next n (id, text) pairs, in input order."""
        return [self.pending.popleft() for _ in range(n)]
