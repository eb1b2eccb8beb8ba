"""The PyTorch M3 model: backbone + the three heads, computing the graph outputs as FlagEmbedding does.

It is both what gets exported to ONNX and the reference the export is validated against.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from m3rt.errors import SourceError

log = logging.getLogger("m3rt.export")

# Backbone tensors M3 never reads (its outputs come from the last hidden state): absent from some checkpoints.
UNUSED_PREFIXES = ("pooler.",)
# Checkpoints saved from a task model prefix the backbone's tensor names.
_CHECKPOINT_PREFIXES = ("", "roberta.", "bert.", "model.")


class M3Graph(nn.Module):
    """(input_ids, attention_mask) -> (dense_vecs [B,H], sparse_weights [B,S], colbert_vecs [B,S-1,Hc])."""

    def __init__(self, backbone: nn.Module, colbert: nn.Linear, sparse: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.colbert = colbert
        self.sparse = sparse
        # Export-time attention stand-ins that need the raw [B, S] mask (see export/attention.py).
        self.mask_readers: list[nn.Module] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        for reader in self.mask_readers:
            reader.key_mask = attention_mask
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        dense = F.normalize(h[:, 0], dim=-1)
        sparse = torch.relu(self.sparse(h)).squeeze(-1)
        colbert = self.colbert(h[:, 1:]) * attention_mask[:, 1:, None].to(h.dtype)
        colbert = F.normalize(colbert, dim=-1)
        return dense, sparse, colbert


def _load_head(path: Path, in_features: int) -> nn.Linear:
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (expected a PyTorch Linear state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, AttributeError, ImportError) as e:
        # Not loadable with weights_only: corrupt, truncated, or not tensors only. Never retried unsafely.
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SourceError(f"{path}: not a readable PyTorch state dict of tensors ({type(e).__name__}: "
                          f"{reason[:160]})") from None
    if not isinstance(state, dict) or "weight" not in state or "bias" not in state:
        raise SourceError(f"{path}: expected a Linear state dict with 'weight' and 'bias'")
    weight, bias = state["weight"], state["bias"]
    if not (isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)):
        raise SourceError(f"{path}: 'weight' and 'bias' must be tensors")
    if weight.ndim != 2 or weight.shape[1] != in_features:
        raise SourceError(f"{path}: weight shape {tuple(weight.shape)} does not fit hidden size {in_features}")
    if bias.shape != (weight.shape[0],):
        raise SourceError(f"{path}: bias shape {tuple(bias.shape)} does not fit weight shape {tuple(weight.shape)}")
    layer = nn.Linear(in_features, weight.shape[0])
    layer.load_state_dict({k: v.float() for k, v in state.items()})  # fp16 upstream: exact upcast
    return layer


def load_m3_graph(root: Path, attention: str = "eager") -> M3Graph:
    """Load backbone and heads from a model directory, fp32, eval mode, eager attention.

    Eager attention keeps the padding mask in the traced graph (the SDPA path drops it when the
    tracing batch happens to have no padding). The benchmark's PyTorch baseline asks for "sdpa", what
    FlagEmbedding gets by default.
    """
    backbone = load_backbone(root, attention)
    hidden = backbone.config.hidden_size
    colbert = _load_head(root / "colbert_linear.pt", hidden)
    sparse = _load_head(root / "sparse_linear.pt", hidden)
    if sparse.out_features != 1:
        raise SourceError(f"{root / 'sparse_linear.pt'}: expected Linear(hidden, 1), got {sparse.out_features} outputs")
    return M3Graph(backbone, colbert, sparse).eval()


def load_backbone(root: Path, attention: str = "eager") -> nn.Module:
    """The backbone with every tensor from the checkpoint, or a SourceError naming what is missing.

    transformers initialises absent tensors randomly and only warns; an export of such a model would pass
    its own validation (PyTorch and ONNX share the random weights), so missing, unexpected or mismatched
    tensors are refused, and the loaded weights are compared with the checkpoint read on its own."""
    from transformers import AutoModel
    from transformers.activations import ACT2FN

    from m3rt.export.source import check_config, weights_file

    config = check_config(root)
    if config.get("hidden_act", "gelu") not in ACT2FN:
        raise SourceError(f"{root / 'config.json'}: unknown hidden_act {config.get('hidden_act')!r} "
                          f"(known: {', '.join(sorted(ACT2FN))})")
    weights = weights_file(root)
    try:
        backbone, info = AutoModel.from_pretrained(root, attn_implementation=attention, dtype=torch.float32,
                                                   output_loading_info=True)
    except (RuntimeError, ValueError, OSError, KeyError, AssertionError, ZeroDivisionError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise SourceError(f"{weights}: cannot be loaded with {root / 'config.json'} ({reason})") from None
    problems = []
    for kind, what in (("missing_keys", "missing from the checkpoint"), ("unexpected_keys", "not used by the model"),
                       ("mismatched_keys", "of another shape than config.json says")):
        keys = sorted(k if isinstance(k, str) else k[0] for k in info.get(kind) or ())
        if kind == "missing_keys":
            keys = [k for k in keys if not k.startswith(UNUSED_PREFIXES)]
        if keys:
            problems.append(f"{len(keys)} tensor(s) {what}: {_summarise(keys)}")
    if info.get("error_msgs"):
        problems.append("; ".join(str(m).splitlines()[0] for m in info["error_msgs"]))
    if problems:
        raise SourceError(f"{weights}: does not match {root / 'config.json'}: {'; '.join(problems)}")
    check_weights_match(backbone, weights)
    return backbone


def check_weights_match(backbone: nn.Module, weights: Path) -> None:
    """Every backbone tensor equals the checkpoint's tensor of the same name, read independently of
    transformers (safetensors, or torch.load with weights_only)."""
    checkpoint = _CheckpointReader(weights)
    names = checkpoint.names()
    absent, differ = [], []
    for name, tensor in backbone.state_dict().items():
        if name.startswith(UNUSED_PREFIXES) and not any(p + name in names for p in _CHECKPOINT_PREFIXES):
            continue
        stored = next((p + name for p in _CHECKPOINT_PREFIXES if p + name in names), None)
        if stored is None:
            if name.endswith("position_ids") or name.endswith("token_type_ids"):
                continue  # buffers transformers builds itself
            absent.append(name)
            continue
        value = checkpoint.get(stored)
        if value.shape != tensor.shape or not torch.equal(value.to(tensor.dtype), tensor):
            differ.append(name)
    if absent or differ:
        parts = ([f"{len(absent)} model tensor(s) not in the checkpoint: {_summarise(absent)}"] if absent else []) + (
            [f"{len(differ)} tensor(s) loaded with other values than stored: {_summarise(differ)}"] if differ else [])
        raise SourceError(f"{weights}: the loaded model is not the checkpoint: {'; '.join(parts)}")


class _CheckpointReader:
    def __init__(self, path: Path):
        self.path = path
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            self._file = safe_open(str(path), framework="pt")
            self._state = None
        else:
            self._file = None
            self._state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    def names(self) -> set[str]:
        return set(self._file.keys()) if self._file is not None else set(self._state)

    def get(self, name: str) -> torch.Tensor:
        return self._file.get_tensor(name) if self._file is not None else self._state[name]


def _summarise(keys: list[str], shown: int = 6) -> str:
    """Tensor names grouped by layer, so 16 missing tensors of layer 2 read as one item."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        parts = k.split(".")
        group = ".".join(parts[:3]) + ".*" if len(parts) > 3 and parts[1] == "layer" else k
        groups.setdefault(group, []).append(k)
    items = [names[0] if len(names) == 1 else f"{g} ({len(names)})" for g, names in groups.items()]
    return ", ".join(items[:shown]) + (f", and {len(items) - shown} more" if len(items) > shown else "")
