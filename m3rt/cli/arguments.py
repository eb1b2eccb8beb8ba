"""Command-line options generated from a config dataclass's fields (m3rt.options.option): one option per field,
its help from the field, the default said from the field (never written here), so the two cannot drift."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields


def add_arguments(parser, cls) -> None:
    """Options for every field of `cls`; a value not given on the command line is None (the field's default
    applies), bools are flags, sequences comma-separated."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        base = _base(hints[f.name])
        kwargs = {"help": meta["help"] + _default_note(f, base)}
        if meta.get("positional"):
            if "nargs" in meta:
                kwargs["nargs"] = meta["nargs"]
            parser.add_argument(f.name, **kwargs)
            continue
        kwargs["default"] = None
        if meta.get("required"):
            kwargs["required"] = True
        if base is bool:
            kwargs["action"] = "store_true"
        elif "choices" in meta:
            kwargs["choices"] = list(meta["choices"])
        elif base is Sequence:
            kwargs["metavar"] = "A,B,..."
        elif base in (int, float):
            kwargs["type"] = base
        parser.add_argument(meta.get("flag") or "--" + f.name.replace("_", "-"), **kwargs)


def from_arguments(args, cls) -> dict:
    """The keywords of `cls` that were given on the command line."""
    given = {}
    for f in fields(cls):
        value = getattr(args, f.name, None)
        if value is not None and not (isinstance(value, list) and not value and f.metadata.get("positional")):
            given[f.name] = value
    return given


def _default_note(f, base) -> str:
    if "default_help" in f.metadata:
        return f" (default: {f.metadata['default_help']})"
    default = f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING \
        else None
    if default in (None, "", ()) or base is bool or f.metadata.get("required"):
        return ""
    if isinstance(default, (list, tuple)):
        default = ",".join(map(str, default))
    return f" (default: {default})"


def _base(hint):
    """int, float, str, bool, dict or Sequence, from `X`, `X | None` or `Sequence[X]`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _base(next(a for a in typing.get_args(hint) if a is not type(None)))
    return Sequence if origin is not None else hint
