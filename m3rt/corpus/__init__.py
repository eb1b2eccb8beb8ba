"""Corpus embedding: input shards (JSONL / Parquet) in, Parquet shards of m3rt's outputs out, resumable by shard;
in-process (job.py) or on Ray Data (ray_data.py). `m3rt embed-corpus` runs embed_corpus; `m3rt encode` runs
encode_files (encode_files.py), which writes the same Parquet layout (schema.py)."""

from m3rt.corpus.job import CorpusConfig, embed_corpus

__all__ = ["embed_corpus", "CorpusConfig"]
