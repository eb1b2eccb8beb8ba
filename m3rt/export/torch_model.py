"""The PyTorch M3 model: backbone + the three heads, computing the graph outputs as FlagEmbedding does.

It is both what gets exported to ONNX and the reference the export is validated against.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


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
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "weight" not in state or "bias" not in state:
        raise ValueError(f"{path}: expected a Linear state dict with 'weight' and 'bias'")
    weight = state["weight"]
    if weight.ndim != 2 or weight.shape[1] != in_features:
        raise ValueError(f"{path}: weight shape {tuple(weight.shape)} does not fit hidden size {in_features}")
    layer = nn.Linear(in_features, weight.shape[0])
    layer.load_state_dict({k: v.float() for k, v in state.items()})  # fp16 upstream: exact upcast
    return layer


def load_m3_graph(root: Path, attention: str = "eager") -> M3Graph:
    """Load backbone and heads from a model directory, fp32, eval mode, eager attention.

    Eager attention keeps the padding mask in the traced graph (the SDPA path drops it when the
    tracing batch happens to have no padding). The benchmark's PyTorch baseline asks for "sdpa", what
    FlagEmbedding gets by default.
    """
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(root, attn_implementation=attention, dtype=torch.float32)
    hidden = backbone.config.hidden_size
    colbert = _load_head(root / "colbert_linear.pt", hidden)
    sparse = _load_head(root / "sparse_linear.pt", hidden)
    if sparse.out_features != 1:
        raise ValueError(f"{root / 'sparse_linear.pt'}: expected Linear(hidden, 1), got {sparse.out_features} outputs")
    return M3Graph(backbone, colbert, sparse).eval()
