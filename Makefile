# Two entry points: `make demo` (the main job) and `make test`. Both create .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Use the MNIST copy beside the checkout when there is one (CI and dev machines);
# elsewhere mnistlab finds or downloads the data itself.
SHARED_MNIST := $(abspath ../shared/data/mnist)
ifneq ($(wildcard $(SHARED_MNIST)/train-images-idx3-ubyte.gz),)
export MNISTLAB_DATA ?= $(SHARED_MNIST)
endif

.PHONY: demo test lint install pretrained clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/mnistlab compare --out report

test: $(VENV)/.installed lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=15

# The linter, the formatter's check and the type checker: CI fails on any of them.
lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Rebuild the reader shipped in the package (classifier, detector, thresholds) with its
# fixed seed: about 20 minutes on 2 cores. Needs MNIST and Debian's handwriting fonts
# (fonts-comic-neue fonts-dancingscript fonts-levien-typoscript); it stops before training without them.
pretrained: $(VENV)/.installed
	$(BIN)/python -m mnistlab.lab.pretrained --out src/mnistlab/pretrained --seed 0

clean:
	rm -rf $(VENV) report .pytest_cache .hypothesis build dist src/*.egg-info
