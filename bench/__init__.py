"""Benchmarks of calliper-pipeline (``make bench``); each script appends to docs/benchmarks.md."""
