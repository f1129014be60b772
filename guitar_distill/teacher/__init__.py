"""The teacher: the write-up's ResNet50 fine-tuning (builder in teacher.model, CLI in teacher.__main__)."""
