"""Kernels printed by softce.codegen from the derivations; never edited by hand."""
