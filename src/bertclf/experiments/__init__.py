"""Experiments over `dvc exp`: tuning studies, their reports, and comparing models."""
