"""Resolve an export SOURCE (a local model directory or a hub id) and check it has every file we need."""

from __future__ import annotations

import re
from pathlib import Path

from m3rt.errors import SourceError

HEAD_FILES = ("colbert_linear.pt", "sparse_linear.pt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOP_LEVEL = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "sentencepiece.bpe.model", *HEAD_FILES]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_source(source: str | Path) -> Path:
    """A local directory as is; a hub id downloaded with huggingface_hub; otherwise a clear error."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    if path.exists():
        raise SourceError(f"{source}: not a directory (expected a model directory in the BAAI/bge-m3 layout)")
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise SourceError(f"{source}: no such directory")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise SourceError(
            f"{source}: not a local directory, and huggingface_hub is not installed to fetch it; "
            "pass a local directory in the BAAI/bge-m3 layout"
        ) from None
    try:
        # Top-level files only (bge-m3's repo also holds an onnx/ folder), safetensors weights first:
        # the .bin twin is another 2.2 GB, fetched only when there are no safetensors.
        root = Path(snapshot_download(repo_id=text, allow_patterns=[*_TOP_LEVEL, WEIGHT_FILES[0]]))
        if not (root / WEIGHT_FILES[0]).is_file():
            root = Path(snapshot_download(repo_id=text, allow_patterns=[*_TOP_LEVEL, WEIGHT_FILES[1]]))
        return root
    except Exception as e:  # offline, unknown repo, auth: all end the same way for the user
        raise SourceError(
            f"{source}: not a local directory, and it could not be downloaded from the hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "pass a local directory in the BAAI/bge-m3 layout"
        ) from None


def check_source_files(root: Path) -> None:
    """Every file the export needs, named when missing (upstream silently uses random heads; we refuse)."""
    for name in ("config.json", "tokenizer.json", *HEAD_FILES):
        if not (root / name).is_file():
            what = "head weights" if name in HEAD_FILES else "file"
            raise SourceError(f"{root / name}: missing {what}; the BAAI/bge-m3 layout needs it")
    if not any((root / w).is_file() for w in WEIGHT_FILES):
        raise SourceError(f"{root}: no backbone weights ({' or '.join(WEIGHT_FILES)})")
