"""Helpers of the Noise2Same port: training input pipeline, prediction, evaluation,
checkpoints and data sets."""
