"""Default plugin `sessions` (being built)."""
