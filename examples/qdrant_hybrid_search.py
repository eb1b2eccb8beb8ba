"""Hybrid search with m3rt and Qdrant: store a small multilingual corpus's dense, sparse and ColBERT vectors in
one Qdrant collection (local mode: embedded, no server), search it with RRF and with weighted fusion, rerank the
candidates by ColBERT MaxSim from the STORED vectors, then reopen the collection and prune a second one.

    pip install -e '.[qdrant]'
    python examples/qdrant_hybrid_search.py              # the checked-in tiny TEST artifact (random weights:
                                                         # it runs, its rankings mean nothing)
    python examples/qdrant_hybrid_search.py bge-m3-int8 --where qdrant-data      # your artifact, a directory
    python examples/qdrant_hybrid_search.py bge-m3-int8 --where http://localhost:6333   # a Qdrant server
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from m3rt import M3Runtime
from m3rt.integrations.qdrant import HybridCollection

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "Der Eiffelturm ist ein Turm aus Schmiedeeisen auf dem Marsfeld in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in sugar.",
    "La fotosíntesis convierte la energía de la luz en energía química.",
    "光合作用是植物把光能转化为化学能的过程。",
    "The central bank raised interest rates and the stock market fell sharply.",
    "Der Aktienmarkt fiel nach der Zinsentscheidung der Zentralbank stark.",
    "Tokyo is the capital city of Japan and its largest metropolis.",
    "La cuisine française est célèbre pour ses fromages et ses vins.",
    "Python is a programming language that emphasises code readability.",
]
QUERIES = ["Wie hoch ist der Eiffelturm?", "how do plants turn light into energy", "capital of Japan"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", nargs="?", default=str(ROOT / "tests" / "data" / "tiny-artifact"))
    ap.add_argument("--where", help="a local-mode directory (default: a temporary one), ':memory:' or a server URL")
    ap.add_argument("--collection", default="m3rt_example")
    args = ap.parse_args()
    where = args.where or str(Path(tempfile.mkdtemp(prefix="m3rt-qdrant-")) / "qdrant")

    with M3Runtime(args.artifact) as rt:
        with HybridCollection.create(where, args.collection, rt, overwrite=True) as col:
            t = time.perf_counter()
            n = col.insert(iter(CORPUS))  # any iterable: streamed through iter_encode, upserted chunk by chunk
            per = col.stored.per_passage()
            print(f"indexed {n} texts into {where}:{args.collection} in {time.perf_counter() - t:.2f} s; per passage: "
                  f"dense {per['dense']:.0f} B, sparse {per['sparse']:.0f} B, ColBERT {per['colbert']:.0f} B "
                  f"({per['colbert_vectors']:.1f} float16 vectors)")
            for ranker in ("rrf", "weighted"):
                t = time.perf_counter()
                results = col.search(QUERIES, limit=3, candidates=8, ranker=ranker, weights=(0.6, 0.4))
                print(f"\n{ranker} fusion, then ColBERT MaxSim on the stored vectors "
                      f"({(time.perf_counter() - t) * 1e3:.0f} ms for {len(QUERIES)} queries)")
                for query, hits in zip(QUERIES, results):
                    print(f"  {query}")
                    for h in hits:
                        print(f"    {h.id:3d}  colbert {h.colbert_score:.3f}  {ranker} {h.hybrid_score:.4f}  {h.text[:60]}")
        with HybridCollection(where, args.collection, rt) as col:  # reopened: a new client on the same store
            print(f"\nreopened: {len(col)} points, top hit for {QUERIES[0]!r}: {col.search(QUERIES[0], limit=1)[0].id}")
            col.insert(CORPUS[:3])  # the same ids again: overwritten, not duplicated
            print(f"inserted 3 again: still {len(col)} points")
        with HybridCollection.create(where, args.collection + "_pruned", rt, overwrite=True, colbert_keep=0.5) as col:
            col.insert(CORPUS)
            per = col.stored.per_passage()
            print(f"pruned to half the tokens (by lexical weight): ColBERT {per['colbert']:.0f} B per passage "
                  f"({per['colbert_vectors']:.1f} vectors)")


if __name__ == "__main__":
    main()
