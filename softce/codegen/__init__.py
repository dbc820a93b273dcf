"""The generator: derived expressions -> row-kernel IR -> printed Numba modules."""
