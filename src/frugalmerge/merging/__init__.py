"""The merging stage."""
