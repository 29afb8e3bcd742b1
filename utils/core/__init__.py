"""Core: files, errors, settings, noise, normalisation, image I/O, TensorFlow start-up."""
