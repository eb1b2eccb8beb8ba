"""MaxSim (ColBERT late-interaction) scoring kernels: a numpy CPU path and Triton GPU kernels."""
