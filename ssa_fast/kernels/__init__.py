"""Fused ops, each with reference / cpp / triton backends (see ssa_fast._backend)."""
