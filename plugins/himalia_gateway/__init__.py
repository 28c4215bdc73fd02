"""Default plugin `gateway` (being built)."""
