"""Evaluation: metrics, classical baselines, the model-fit note, figures."""
