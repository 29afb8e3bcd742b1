"""Data: the data sets, your own image files, BSD68's build, the training input pipeline."""
