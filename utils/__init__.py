"""Helpers of the Noise2Same port: training loop and input pipeline, prediction, serving,
evaluation, checkpoints, data sets and the scripts' shared command-line code."""
