"""M3Runtime.from_pretrained: a model directory or hub id in, a runtime out, exporting it once into a cache.

The artifact is kept under <cache_dir>/artifacts/<model>-<precision>-<key>, the key hashing the m3rt version,
the precision, the attention and the source: the content of its small files and the size and mtime of its
weights (hashing 2 GB of weights on every start would cost more than the cache saves). A changed source or a
new m3rt version exports again; concurrent first calls export once (the others wait for it). Needs the
`export` extra on a cache miss only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from m3rt.artifact import MANIFEST, PRECISIONS, cache_dir as default_cache_dir

log = logging.getLogger("m3rt.pretrained")

SMALL_FILE = 16 << 20  # hashed whole below this size; stamped (size, mtime) above
WAIT_S = 3600  # for another process exporting the same artifact


def cached_artifact(source: str | Path, *, precision: str = "fp32", attention: str = "fused",
                    cache_dir: str | Path | None = None) -> Path:
    """The cached artifact of `source` at `precision`, exported into the cache first if it is not there."""
    from m3rt.version import __version__

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    try:
        from m3rt.export import export
        from m3rt.export.source import check_source_files, resolve_source
    except ImportError as e:
        raise ImportError(f"exporting {source} needs the export extra: pip install 'm3rt[export]' ({e})") from None
    root = resolve_source(source)
    check_source_files(root)
    digest = hashlib.sha256(json.dumps({"m3rt": __version__, "precision": precision, "attention": attention,
                                        "source": _source_stamp(root)}, sort_keys=True).encode()).hexdigest()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = Path(str(source).rstrip("/")).name or "model"
    out = base / "artifacts" / f"{name}-{precision}-{digest[:16]}"
    deadline = time.monotonic() + WAIT_S
    while not (out / MANIFEST).is_file():
        from m3rt.errors import ExportBusyError

        try:
            log.info("exporting %s (%s) into the cache: %s", source, precision, out)
            export(root, out, precision=precision, attention=attention)
        except ExportBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # another process exports it: use theirs
    return out


def _source_stamp(root: Path) -> dict:
    stamp = {}
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        st = path.stat()
        if st.st_size <= SMALL_FILE:
            stamp[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            stamp[path.name] = [st.st_size, st.st_mtime_ns]
    return stamp
