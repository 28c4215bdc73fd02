"""Himalia's benchmark suite: Himalia against jupyter_server side by side (`python -m bench`)."""
