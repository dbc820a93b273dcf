"""Derivations of the softmax family from its definitions (D1-D12)."""
