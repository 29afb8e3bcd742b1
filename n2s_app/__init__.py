"""What serves the command line and the web page, above models.py (docs/layers.md): flags and
one-line errors, run planning, the per-file loop, the Gradio app."""
