"""A tiny BGE-M3-shaped TEST model, built deterministically on the spot (no download).

Same layout as BAAI/bge-m3: an XLM-RoBERTa backbone (random weights), `colbert_linear.pt` (stored fp16 as
upstream), `sparse_linear.pt`, and an XLM-R style SentencePiece-unigram `tokenizer.json` trained here on a
small multilingual corpus, with `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3 and XLM-R's `<s> $A </s>` template.
Its outputs are meaningless: it exists to exercise the exporter, the runtime and parity with FlagEmbedding.
"""

from __future__ import annotations

import json
from pathlib import Path

# A few sentences per script, enough for the unigram trainer to find subwords in each.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is BGE M3? It is an embedding model supporting dense, sparse and multi-vector retrieval.",
    "Definition of BM25: a ranking function used by search engines to estimate relevance.",
    "Large language models are trained on large amounts of text to predict the next token.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。 北京是中国的首都。",
    "素早い茶色の狐が怠け者の犬を飛び越える。 東京は日本の首都です。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Nhanh chóng con cáo nâu nhảy qua con chó lười.",
    "Search engines rank documents by relevance; retrieval augmented generation needs good embeddings.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024, symbols ! ? , . ; : ( ) [ ] { } @ # % & * + - = / \\ ' \"",
]

TINY_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=8194,  # 8192 usable tokens, as bge-m3
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    # Larger than transformers' 0.02 so the heads give varied, non-degenerate outputs.
    initializer_range=0.2,
)

# The real BAAI/bge-m3 shape (random weights): for large-model export tests and benchmarks.
BGE_M3_SHAPE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    vocab_size=250002, initializer_range=0.02,
)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def build_tokenizer(vocab_size: int = 600):
    """An XLM-R style unigram tokenizer trained on CORPUS: specials at ids 0-3, `<mask>` last."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens(["<mask>"])
    # XLM-R's post-processor: without it no <s>/</s> are added and everything downstream is off by one.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t} must have id {i}"
    return tok


def build_tiny_model(out: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny BGE-M3-shaped test model directory to `out` and return its path."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 8192,
         "clean_up_tokenization_spaces": True, **specials}, indent=2))

    cfg = XLMRobertaConfig(**{"vocab_size": tok.get_vocab_size(), **TINY_CONFIG, **config_overrides})
    torch.manual_seed(seed)
    model = XLMRobertaModel(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    hidden = cfg.hidden_size
    colbert = torch.nn.Linear(hidden, hidden)
    sparse = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        for layer in (colbert, sparse):
            layer.weight.normal_(0.0, hidden ** -0.5)
            layer.bias.normal_(0.0, 0.1)
    # Upstream ships colbert_linear.pt in fp16; loading upcasts it exactly.
    torch.save({k: v.half() for k, v in colbert.state_dict().items()}, out / "colbert_linear.pt")
    torch.save(sparse.state_dict(), out / "sparse_linear.pt")
    (out / "README.md").write_text(
        "# TEST MODEL: tiny BGE-M3-shaped model with RANDOM weights, built by m3rt for tests and demos.\n"
        "Its embeddings are meaningless.\n"
    )
    return out
