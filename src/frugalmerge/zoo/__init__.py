"""The zoo stage."""
