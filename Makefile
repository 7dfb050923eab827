# Two commands on a fresh machine:  make demo  (the main job on the embedded default)
#                                   make test  (the whole test suite, with its own set-up)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fishflow-installed
PYTEST_ARGS ?=

.PHONY: demo test lint format clean gpu-wheels

$(STAMP): pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --configfile config/config.yaml
	@echo "Done: listen to results/demo/audio/<lang>/<voice>/*.wav; manifests in results/demo/"

# Two pytest workers: the Slurm tests (mostly waiting on the scheduler) beside all the others,
# each set whole on one worker (tests/conftest.py, TwoGroups).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

# The wheels the GPU kit carries (benchmarks/gpu_throughput.py --wheels .whl): Python 3.12,
# manylinux x86_64, only what a machine with torch, torchaudio, transformers and lightning lacks.
gpu-wheels: $(STAMP)
	PIP="$(BIN)/python -m pip" bash benchmarks/gpu_kit/build_wheels.sh .whl

clean:
	rm -rf results/demo .snakemake
