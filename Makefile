# guitar-distill: every stage is `python -m <stage>`; these targets chain them.
PRESET ?= full
ARTIFACTS ?= artifacts
PYTHON ?= .venv/bin/python
# pytest-xdist workers for make test (the 2 cores CI has); --dist loadgroup hands out single tests, except that
# the tests of the smoke models go to one worker, which builds them once (tests/conftest.py: smoke_models)
TEST_WORKERS ?= 2
STAGE_ARGS = --preset $(PRESET) --artifacts $(ARTIFACTS)
DEMO_ARGS = --preset demo --artifacts $(ARTIFACTS)/demo

.PHONY: setup data teacher baseline student distill export bench demo cpu stretch patient patient-carry release all pi-check web-check gpu-kit gpu-check audit lint test test-fast clean

setup:            ## .venv in the project root with the dependencies' ranges (dev and jax extras)
	python3 -m venv .venv
	.venv/bin/pip install --upgrade pip
	.venv/bin/pip install -e ".[dev,jax]"

data:             ## scan, validate, de-duplicate, split, decode cache
	$(PYTHON) -m guitar_distill.dataset $(STAGE_ARGS)

teacher: data     ## ResNet50 teacher with the preset's recipe (resumable)
	$(PYTHON) -m teacher $(STAGE_ARGS)

baseline: data    ## NiN trained from labels alone: the no-distillation baseline (artifacts/baseline)
	$(PYTHON) -m guitar_distill.student $(STAGE_ARGS)

student: baseline

distill: teacher baseline  ## NiN student distilled from the teacher (offline logits on the cpu preset)
	$(PYTHON) -m guitar_distill.distill $(STAGE_ARGS)

export: distill   ## ONNX and TFLite, every precision, parity-checked; the edge bundle
	$(PYTHON) -m guitar_distill.export $(STAGE_ARGS)

bench: export     ## latency, accuracy, robustness, Grad-CAM; the side-by-side report in reports/
	$(PYTHON) -m benchmarks.latency $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.accuracy $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.robustness $(STAGE_ARGS)
	$(PYTHON) -m benchmarks.gradcam $(STAGE_ARGS) --corrupt doodle
	$(PYTHON) -m benchmarks.report $(STAGE_ARGS)

all: bench        ## the whole pipeline, the write-up's recipe (PRESET=full wants a GPU)

cpu:              ## the CPU reference run behind models/ and reports/ (hours on 2 cores, resumable)
	$(MAKE) teacher baseline PRESET=cpu
	$(PYTHON) -m guitar_distill.export.release --preset cpu --artifacts $(ARTIFACTS) --import-teacher --teacher-file $(ARTIFACTS)/teacher/model.keras
	$(MAKE) bench PRESET=cpu

stretch:          ## a ResNet50 stretch from the carried grow run (runs/grow-teacher), then its students and benchmarks
	$(PYTHON) -m guitar_distill.dataset --preset stretch --artifacts $(ARTIFACTS)/stretch
	$(PYTHON) -m teacher --preset stretch --artifacts $(ARTIFACTS)/stretch
	$(PYTHON) -m guitar_distill.export.release --preset stretch --artifacts $(ARTIFACTS)/stretch --import-teacher --teacher-file $(ARTIFACTS)/stretch/teacher/model.keras
	$(PYTHON) -m guitar_distill.distill --preset stretch --artifacts $(ARTIFACTS)/stretch
	$(PYTHON) -m guitar_distill.student --preset stretch --artifacts $(ARTIFACTS)/stretch
	$(PYTHON) -m guitar_distill.export --preset stretch --artifacts $(ARTIFACTS)/stretch --models student
	$(PYTHON) -m benchmarks.latency --preset stretch --artifacts $(ARTIFACTS)/stretch --threads 1
	$(PYTHON) -m benchmarks.accuracy --preset stretch --artifacts $(ARTIFACTS)/stretch
	$(PYTHON) -m benchmarks.robustness --preset stretch --artifacts $(ARTIFACTS)/stretch

# The run behind models/ (reports/teacher_recipe.md): three NiNs trained 200 epochs from labels (the first is the
# no-KD baseline), their flip-averaged mean as the teacher, a student distilled from it for the same 200 epochs.
PATIENT = $(ARTIFACTS)/patient
PATIENT_SEEDS = 7 3
PATIENT_ARGS = --preset patient --artifacts $(PATIENT)
PATIENT_CARRY = runs/patient
PATIENT_MIX = --set student.mix=mixup   # the student's MixUp: chosen on validation (reports/teacher_recipe.md)
patient:          ## the run behind models/: an ensemble of 200-epoch NiNs distilled into one (hours on 2 cores, resumable)
	$(PYTHON) -m guitar_distill.dataset $(PATIENT_ARGS)
	test ! -d $(PATIENT_CARRY) || $(PYTHON) -m guitar_distill.common.carry restore-tree $(PATIENT_CARRY) $(PATIENT)
	$(PYTHON) -m guitar_distill.student $(PATIENT_ARGS)
	set -e; for seed in $(PATIENT_SEEDS); do \
	  mkdir -p $(PATIENT)/seed$$seed && { test -e $(PATIENT)/seed$$seed/data || ln -s ../data $(PATIENT)/seed$$seed/data; }; \
	  $(PYTHON) -m guitar_distill.student --preset patient --artifacts $(PATIENT)/seed$$seed --set student.seed=$$seed; \
	done
	test -f $(PATIENT)/teacher/model.keras || $(PYTHON) -m guitar_distill.teacher.ensemble $(PATIENT_ARGS) --flip \
	  --out $(PATIENT)/teacher --members $(PATIENT)/baseline/model.keras $(PATIENT_SEEDS:%=$(PATIENT)/seed%/baseline/model.keras)
	$(PYTHON) -m guitar_distill.export.release $(PATIENT_ARGS) --import-teacher --teacher-file $(PATIENT)/teacher/model.keras
	$(PYTHON) -m guitar_distill.distill $(PATIENT_ARGS) $(PATIENT_MIX)
	$(PYTHON) -m guitar_distill.export $(PATIENT_ARGS) --models student
	$(PYTHON) -m benchmarks.latency $(PATIENT_ARGS) --threads 1
	$(PYTHON) -m benchmarks.accuracy $(PATIENT_ARGS)
	$(PYTHON) -m benchmarks.robustness $(PATIENT_ARGS)

patient-carry:    ## carry the patient runs (finished and in progress) into runs/patient for git; make patient resumes them
	$(PYTHON) -m guitar_distill.common.carry save-tree $(PATIENT) $(PATIENT_CARRY)

release:          ## copy the patient run's student and teacher into models/ (make patient first)
	$(PYTHON) -m guitar_distill.export.release $(PATIENT_ARGS)

demo:             ## ~16 minutes on 2 CPU cores with AMX: a student distilled from the released teacher in models/
	@start=$$(date +%s); set -ex; \
	$(PYTHON) -m guitar_distill.dataset $(DEMO_ARGS); \
	$(PYTHON) -m guitar_distill.export.release $(DEMO_ARGS) --import-teacher; \
	$(PYTHON) -m guitar_distill.distill $(DEMO_ARGS); \
	$(PYTHON) -m guitar_distill.export $(DEMO_ARGS) --models student; \
	$(PYTHON) -m benchmarks.latency $(DEMO_ARGS) --threads 1; \
	$(PYTHON) -m benchmarks.accuracy $(DEMO_ARGS); \
	$(PYTHON) -m benchmarks.report $(DEMO_ARGS) --reports $(ARTIFACTS)/demo/report; \
	set +x; echo "demo finished in $$(( $$(date +%s) - start )) s; report: $(ARTIFACTS)/demo/report/README.md"

audit: data       ## photos whose label looks wrong: k-fold NiN students + cleanlab (artifacts/audit/)
	$(PYTHON) -m guitar_distill.dataset.audit $(STAGE_ARGS)

gpu-kit:          ## gpu-kit/: the full split as 224 px WebP, the manifest, keras wheels (docs/gpu.md)
	$(PYTHON) -m guitar_distill.dataset --preset full --artifacts $(ARTIFACTS)/gpu --no-cache
	$(PYTHON) -m guitar_distill.gpukit.build --preset full --artifacts $(ARTIFACTS)/gpu --kit gpu-kit

gpu-check:        ## the kit on the smoke preset in a venv with only the GPU machine's packages, no TensorFlow
	$(PYTHON) -m guitar_distill.gpukit.check

pi-check:         ## the edge bundle on aarch64 (QEMU user mode), answers compared with x86
	$(PYTHON) -m guitar_distill.checks.pi_check

web-check:        ## the bundle's web page in headless Chromium, answers compared with Python
	$(PYTHON) -m guitar_distill.checks.web_check

lint:             ## ruff: the linter and the formatter's check (CI runs it before the tests)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test:             ## the whole test suite (small, CPU only; CI runs this): two pytest-xdist workers
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-fast:        ## the fast tier: under a minute, no photos, no trained models
	$(PYTHON) -m pytest -q -m "not slow"

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
