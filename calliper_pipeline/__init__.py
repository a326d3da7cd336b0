"""calliper-pipeline library."""
