"""Atomic artifact writes: an export builds in a sibling staging directory and is swapped into place only
after every check passed, under an exclusive lock per output directory.

Beside OUT (same parent, so renames stay on one filesystem) an export keeps:
  .OUT.m3rt-lock           the lock file (flock), removed when the export ends
  .OUT.m3rt-staging-PID-*  the new artifact being written
  .OUT.m3rt-scratch-PID-*  intermediate graphs (the fp32 reference of an int8 export, tracer output)
  .OUT.m3rt-old-PID-*      the previous artifact, for the instant between the two renames of the swap
A run killed at any point (SIGKILL included) leaves OUT as it was, or the previous artifact in `old` if it
died between the two renames; the next export of OUT, holding the lock, restores that and deletes the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from m3rt.artifact import MANIFEST, read_manifest
from m3rt.errors import ArtifactError, ExportBusyError
from m3rt.locking import exclusive_lock, lock_path

log = logging.getLogger("m3rt.export")

_TAG = ".m3rt-"


@dataclass(frozen=True)
class Staging:
    """Where one export writes: `root` becomes the artifact, `scratch` is deleted at the end."""

    out: Path
    root: Path
    scratch: Path


def sibling(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}{_TAG}{kind}"


@contextlib.contextmanager
def staged_artifact(out: str | Path, *, overwrite: bool, source: Path | None = None) -> Iterator[Staging]:
    """Lock OUT, clean what killed runs left, check that OUT may be written, yield a Staging; on a clean exit
    swap the staged artifact into OUT (the previous one kept until the swap succeeded). On any exception,
    KeyboardInterrupt included, OUT is left as it was and the staging files are deleted."""
    out = Path(out).absolute()
    check_writable_target(out, overwrite=overwrite, source=source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out, "another m3rt export", ExportBusyError):
        recover_leftovers(out)
        check_writable_target(out, overwrite=overwrite, source=source)  # again, now that nobody else writes
        tag = f"{os.getpid()}-"
        root = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_TAG}staging-{tag}"))
        scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_TAG}scratch-{tag}"))
        try:
            yield Staging(out=out, root=root, scratch=scratch)
            _swap_into_place(root, out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def check_writable_target(out: Path, *, overwrite: bool, source: Path | None = None) -> None:
    """OUT must be new, empty, or (with overwrite) an m3rt artifact holding nothing but its listed files;
    never the working directory, a folder above it, or a folder holding the export's source."""
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise FileExistsError(f"{out}: is the working directory or a folder above it; export to a new folder")
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise FileExistsError(f"{out}: refusing to write an artifact over a file system root or a home folder")
    if source is not None:
        src = Path(source).resolve()
        if resolved == src or resolved in src.parents:
            raise FileExistsError(f"{out}: holds the export's source {source}; export to another folder")
    if out.is_symlink():
        raise FileExistsError(f"{out}: is a symbolic link; give the real directory")
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out}: output directory exists and is not empty (pass overwrite=True / --overwrite)")
    if not (out / MANIFEST).is_file():
        raise FileExistsError(f"{out}: not an m3rt artifact (no {MANIFEST}); refusing to overwrite it")
    try:
        read_manifest(out, verify=False)  # also refuses files the manifest does not list
    except ArtifactError as e:
        raise FileExistsError(f"{out}: not an m3rt artifact that --overwrite may replace: {e}") from None


def recover_leftovers(out: Path) -> list[Path]:
    """Undo what killed exports of OUT left beside it (call with the lock held). Returns what was removed or
    restored. A previous artifact moved aside by an interrupted swap goes back when OUT is missing."""
    touched = []
    prefix = f".{out.name}{_TAG}"
    legacy = f".{out.name}-fp32-"  # the scratch name of m3rt versions before atomic exports
    for path in sorted(out.parent.iterdir()):
        name = path.name
        if name.startswith(legacy) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif not name.startswith(prefix) or name == lock_path(out).name:
            continue
        elif name.startswith(f"{prefix}old-") and (path / "artifact").is_dir() and not out.exists():
            log.warning("restoring %s from an export interrupted while swapping (%s)", out, path.name)
            os.rename(path / "artifact", out)
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and not path.is_symlink():
            log.info("removing %s, left by an interrupted export", path.name)
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        touched.append(path)
    return touched


def _swap_into_place(staged: Path, out: Path) -> None:
    """OUT becomes `staged`; a previous OUT is renamed aside first and deleted only once the swap is done."""
    _fsync_tree(staged)
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_TAG}old-{os.getpid()}-"))
            os.rename(out, old / "artifact")  # a rename inside one parent: atomic
        else:
            out.rmdir()
    os.rename(staged, out)
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """The staged files reach the disk before the rename publishes them (a power cut leaves no torn files)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
