"""TEST models built on the spot (no download): the tiny BGE-M3-shaped model and a trained encoder with M3
heads attached. Importable without torch; building them needs the `export` extra."""
