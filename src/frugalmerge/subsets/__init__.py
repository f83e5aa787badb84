"""The subsets stage."""
