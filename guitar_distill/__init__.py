"""guitar-distill: a ResNet50 teacher, a NiN student distilled from it, exported and benchmarked side by side."""
