"""The write-up's run on a lent GPU machine that has JAX but no TensorFlow or Keras.

make gpu-kit      build.py: photos as 224 px WebP, the manifest, the wheels it lacks (<= 64 MiB)
(GPU machine)     run.py: install the wheels, check the GPU, decode, then the project's own
                  teacher, distill and student stages under KERAS_BACKEND=jax, capped in time;
                  weights (float16, in pieces), histories and metrics into $OUT
python -m guitar_distill.gpukit.receive OUT    receive.py: pieces joined and checked, Keras models rebuilt here
make gpu-check    check.py: all of it on the smoke preset, in a venv with only what the GPU
                  machine has, TensorFlow unimportable, and the device's limits checked
"""
