"""Export: teacher and student to ONNX and TFLite in every precision, parity-checked; the edge bundle."""
