"""Benchmarks: `python -m benchmarks.<name> …` from the project root (see README.md here)."""
