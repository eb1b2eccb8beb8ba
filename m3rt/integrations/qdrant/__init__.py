"""Qdrant: m3rt's dense, sparse and ColBERT outputs in one Qdrant collection, searched there (the `qdrant` extra).

- HybridCollection: create a collection with named `dense`, `sparse` and `colbert` (MAX_SIM multivector) vectors,
  any of them; insert a corpus streamed through iter_encode (resumable upserts); hybrid search (RRF or
  weighted) reranked by ColBERT MaxSim on the STORED vectors. Local mode (a directory or ":memory:", embedded, no
  server) and a server URL run the same code; in local mode m3rt computes the same candidates from the stored
  arrays (local_search.py) rather than through local mode's Python search.
- ColBERT storage: float16 by default; optional pruning to the k strongest vectors per passage (pruning.py).
qdrant_client is imported when a collection is opened, not by importing this package.
"""

from m3rt.integrations.qdrant.collection import Hit, HybridCollection, open_client
from m3rt.integrations.qdrant.points import StoredBytes
from m3rt.integrations.qdrant.pruning import Pruning

__all__ = ["Hit", "HybridCollection", "Pruning", "StoredBytes", "open_client"]
