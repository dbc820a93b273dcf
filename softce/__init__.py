"""softce: the softmax family, derived with SymPy and compiled with Numba."""

__version__ = "0.1.0"
