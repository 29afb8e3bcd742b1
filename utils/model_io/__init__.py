"""Model I/O: checkpoints (TF1 and TF2), the SavedModel, the bioimage.io package."""
