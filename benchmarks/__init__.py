"""`make bench`, run from the repository root as `python -m benchmarks.run` (see run.py)."""
