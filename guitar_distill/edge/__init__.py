"""Edge inference: photo decoding and the TFLite predictor, needing only numpy, pillow and ai-edge-litert.

Nothing in this package imports the rest of the project, so the files can be copied into the
student bundle and run on a Raspberry Pi as they are.
"""
