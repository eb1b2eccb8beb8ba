"""Config dataclass fields that carry their own documentation: each option's default is written once, in its
field, and the command line is generated from the fields (m3rt/cli/arguments.py)."""

from __future__ import annotations

from dataclasses import field


def option(default, help: str, **meta):
    """A config field. meta, read by the CLI generator: choices; positional (with nargs); required; flag (the
    option's name when not --field-name); default_help (said instead of the default); cli=False (not an
    option: set by the command itself)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def default_of(cls, name: str):
    """A dataclass field's default, for another field whose None means "that one's"."""
    return cls.__dataclass_fields__[name].default
