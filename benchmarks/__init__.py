"""Benchmarks: `python -m benchmarks.speed` (training, prediction and input-pipeline speed)."""
