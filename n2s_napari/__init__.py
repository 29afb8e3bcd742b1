"""The napari plugin of Noise2Same (TF2): a Denoise and a Train widget and sample data
(`napari.yaml`). Installed with the project's `napari` extra: pip install -e ".[napari]"."""
