"""The estimators stage."""
