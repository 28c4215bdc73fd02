"""Default plugin `kernels` (being built)."""
