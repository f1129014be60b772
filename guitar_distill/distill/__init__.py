"""Distillation: the ResNet50 teacher's soft targets into the NiN student."""
