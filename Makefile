# guitar-distill: every stage is `python -m <stage>`; these targets chain them.
PRESET ?= full
ARTIFACTS ?= artifacts
PYTHON ?= .venv/bin/python
STAGE_ARGS = --preset $(PRESET) --artifacts $(ARTIFACTS)

.PHONY: setup data teacher student distill export bench demo all test clean

setup:            ## .venv in the project root with pinned dependencies (dev and jax extras)
	python3 -m venv .venv
	.venv/bin/pip install --upgrade pip
	.venv/bin/pip install -e ".[dev,jax]"

data:             ## scan, validate, de-duplicate, split, decode cache
	$(PYTHON) -m dataset $(STAGE_ARGS)

teacher: data     ## ResNet50 teacher, the write-up's recipe
	$(PYTHON) -m teacher $(STAGE_ARGS)

student: data     ## NiN student from labels alone (the no-distillation baseline)
	$(PYTHON) -m student $(STAGE_ARGS)

distill: teacher student  ## NiN student distilled from the teacher
	$(PYTHON) -m distill $(STAGE_ARGS)

export: distill   ## ONNX and TFLite, every precision, parity-checked; the edge bundle
	$(PYTHON) -m export $(STAGE_ARGS)

bench: export     ## latency, accuracy, robustness, Grad-CAM; reports/README.md
	$(PYTHON) -m benchmarks.latency $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.accuracy $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.robustness $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.gradcam $(STAGE_ARGS) --corrupt doodle
	$(PYTHON) -m benchmarks.report $(STAGE_ARGS)

all: bench        ## the whole pipeline on the full presets (wants a GPU)

demo:             ## the whole pipeline on the demo preset: about 20 minutes on 2 CPU cores
	$(MAKE) bench PRESET=demo

test:             ## the test suite (small, CPU only)
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
