"""The teacher: the write-up's ResNet50 fine-tuning."""
from teacher.model import build_teacher  # noqa: F401
