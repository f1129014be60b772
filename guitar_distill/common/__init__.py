"""Code shared by every stage: presets, artifact paths and atomic writes, the training loop."""
