# The two set-up commands: `make repro` and `make test`. Both create .venv when missing and
# install what is missing: the pinned CPU build of torch first (an unpinned torch can pull a
# multi-GB CUDA build), then the exact versions of requirements.lock (hash-checked), then this
# package itself. `make lock` upgrades requirements.lock within pyproject.toml's ranges.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Where `make lock` finds the CPU build of torch, whose metadata names no CUDA packages: a folder
# of wheels here, or the index that serves PyTorch's CPU builds (TORCH_SOURCE="--extra-index-url URL").
# Packages come from the index pip and uv are configured with: PIP_INDEX_URL (or pip.conf) for
# pip, UV_INDEX_URL and UV_EXTRA_INDEX_URL for uv, which does not read pip.conf.
TORCH_SOURCE ?= --find-links /opt/wheels
STAMP := $(VENV)/.bertclf-installed
# the GPU image's transformers, for the GPU check's dry run (benchmarks/gpu_check.sh --dry)
IMAGE_SITE := .cache/gpu-image
IMAGE_STAMP := $(IMAGE_SITE)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup repro test lint bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

$(IMAGE_STAMP): benchmarks/gpu_image/requirements.txt | $(STAMP)
	rm -rf $(IMAGE_SITE)
	$(BIN)/python -m pip install -q --no-deps --require-hashes --target $(IMAGE_SITE) -r $<
	@touch $@

test: setup $(IMAGE_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src stages tests benchmarks

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.tokenize_imdb

lock: setup
	$(BIN)/python -m pip install -q uv
	printf '%s+cpu\n' "$(TORCH)" > $(VENV)/torch-override.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --upgrade \
		--generate-hashes $(TORCH_SOURCE) \
		--override $(VENV)/torch-override.txt --no-emit-package torch \
		--custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf $(VENV) $(IMAGE_SITE)
