"""Benchmarks: `python -m bench [NAME ...]` (make bench). Figures go to README "Benchmarks"."""
