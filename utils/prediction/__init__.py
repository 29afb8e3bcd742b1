"""Prediction: the predictor, tiling, the refinement, whole image files."""
