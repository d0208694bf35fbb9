# The two set-up commands: `make repro` and `make test`. Both create .venv when missing and
# install what is missing: the pinned CPU build of torch first (an unpinned torch can pull a
# multi-GB CUDA build), then this package with its dev extras.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.bertclf-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup repro test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src stages tests benchmarks

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/tokenize_imdb.py

clean:
	rm -rf $(VENV)
