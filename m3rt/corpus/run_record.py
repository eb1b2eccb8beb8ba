"""What makes `m3rt encode --resume` safe: a small record of the run beside its output (.NAME.m3rt-run.json:
what the rows depend on, and a digest of the input texts written so far), and the output's complete rows read
from its tail only (an output of any size costs one line to resume)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Checkpoints kept: the output holds at least the last one's rows (rows are flushed before the record is saved).
KEPT_CHECKPOINTS = 2
TAIL_BLOCK = 1 << 20
HASH_PIECE = 1 << 20


def record_path(output: Path) -> Path:
    return output.parent / f".{output.name}.m3rt-run.json"


class InputDigest:
    """A running digest (BLAKE2b) of the input's texts and ids, in order: the input's identity up to a row."""

    def __init__(self):
        self.sha, self.rows = hashlib.blake2b(digest_size=32), 0

    def add(self, text: str, id_) -> None:
        self.sha.update(json.dumps(id_, default=str).encode() + b"\0%d\0" % len(text))
        for at in range(0, len(text), HASH_PIECE):  # a long text hashed in pieces: no copy of it at once
            self.sha.update(text[at:at + HASH_PIECE].encode("utf-8", "surrogatepass"))
        self.rows += 1

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


class RunRecord:
    def __init__(self, output: Path, settings: dict, checkpoints: list | None = None):
        self.output, self.settings, self.checkpoints = output, settings, list(checkpoints or [])

    @classmethod
    def load(cls, output: Path) -> "RunRecord | None":
        path = record_path(output)
        try:
            data = json.loads(path.read_text())
            return cls(output, dict(data["settings"]), [tuple(c) for c in data["checkpoints"]])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: unreadable run record ({e}); start again with --overwrite") from None

    def mismatch(self, settings: dict) -> str | None:
        """The first setting this run would change, as 'name: recorded -> now', or None."""
        for key in sorted(set(self.settings) | set(settings)):
            if self.settings.get(key) != settings.get(key):
                return f"{key}: {self.settings.get(key)!r} -> {settings.get(key)!r}"
        return None

    def checkpoint_within(self, rows: int) -> tuple[int, str] | None:
        """The last checkpoint the output's `rows` complete rows cover."""
        return max((c for c in self.checkpoints if c[0] <= rows), default=None)

    def add(self, digest: InputDigest) -> None:
        self.checkpoints = [*self.checkpoints, (digest.rows, digest.hexdigest())][-KEPT_CHECKPOINTS:]
        self.save()

    def save(self) -> None:
        path = record_path(self.output)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"settings": self.settings, "checkpoints": self.checkpoints}))
        os.replace(tmp, path)

    def remove(self) -> None:
        record_path(self.output).unlink(missing_ok=True)


def complete_rows(path: Path) -> tuple[int, int]:
    """(complete rows, bytes they take) of a jsonl output, read from its tail: the last complete line's
    "index" + 1. A torn last line (an interrupted write) is not counted."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        end = _last_newline(f, size)
        if end < 0:
            return 0, 0
        start = _last_newline(f, end) + 1
        f.seek(start)
        line = f.read(end - start)
    try:
        index = json.loads(line)["index"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: its last complete line is not an m3rt encode row (no index); refusing to resume "
                         "it") from None
    return index + 1, end + 1


def _last_newline(f, before: int) -> int:
    """The offset of the last b"\\n" before byte `before`, or -1."""
    pos = before
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        f.seek(pos - step)
        block = f.read(step)
        at = block.rfind(b"\n")
        if at >= 0:
            return pos - step + at
        pos -= step
    return -1
