"""Experiments: a grid of named configurations x training seeds, run through the same library
steps the assets use (training inputs, training, the evaluation protocol), stored cell by cell
in DuckDB (resumable) and summarised as one ablation table with the baselines beside it."""
