"""Benchmarks of MDNet against baselines (see run.py)."""
