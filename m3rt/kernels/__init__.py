"""MaxSim (ColBERT late-interaction) scoring kernels: a numpy CPU path and Triton GPU kernels.

Importing this package loads numpy only; torch / triton are imported on first use with tensors.
"""

from .maxsim import maxsim, maxsim_many, maxsim_pairs, rerank
from .packing import pack

__all__ = ["pack", "maxsim", "maxsim_many", "maxsim_pairs", "rerank"]
