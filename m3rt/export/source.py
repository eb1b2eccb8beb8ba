"""Resolve an export SOURCE (a local model directory or a hub id) and check it has every file we need."""

from __future__ import annotations

import json
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


def weights_file(root: Path) -> Path:
    """The backbone checkpoint transformers loads: safetensors first."""
    for name in WEIGHT_FILES:
        if (root / name).is_file():
            return root / name
    raise SourceError(f"{root}: no backbone weights ({' or '.join(WEIGHT_FILES)})")


# Sizes config.json must give as positive integers (a 0 or a negative one fails deep inside transformers).
_POSITIVE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
             "max_position_embeddings")


def check_config(root: Path) -> dict:
    """config.json's model sizes, each checked, as a dict; every problem named with the file."""
    path = root / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise SourceError(f"{path}: expected a JSON object")
    for key in _POSITIVE:
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SourceError(f"{path}: {key} must be a positive integer, got {value!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise SourceError(f"{path}: hidden_size {config['hidden_size']} is not a multiple of "
                          f"num_attention_heads {config['num_attention_heads']}")
    pad = config.get("pad_token_id")
    if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < config["vocab_size"]):
        raise SourceError(f"{path}: pad_token_id {pad!r} is not a token id below vocab_size {config['vocab_size']}")
    return config
