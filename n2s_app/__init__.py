"""What serves the command line and the web page: flags, run planning, the per-file loop, the Gradio app."""
