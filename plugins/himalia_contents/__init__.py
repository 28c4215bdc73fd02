"""Default plugin `contents` (being built)."""
