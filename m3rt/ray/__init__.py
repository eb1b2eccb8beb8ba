"""m3rt on Ray (the `ray` extra): corpus embedding on Ray Data (embed_dataset, embed_shards) and `m3rt serve`
replicated on Ray Serve (serve.py). Ray is imported by these modules only."""

from m3rt.ray.data import embed_dataset

__all__ = ["embed_dataset"]
