# cardtune — the two commands: `make demo` and `make test` do all set-up themselves.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed-dev
STAMP_RUN := $(VENV)/.installed-run
# torch: where no NVIDIA GPU is visible, install the CPU wheel first (fast, small);
# users with a GPU get the normal torch requirement from the [train] extra.
TORCH_CPU ?= torch==2.13.0

.PHONY: venv dev demo compare test lint typecheck format bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: torch comes from the [train] extra"; \
	else \
		echo "no GPU found: installing the CPU torch wheel ($(TORCH_CPU))"; \
		$(BIN)/python -m pip install --quiet "$(TORCH_CPU)"; \
	fi
	@touch $@

# Strict editable install, so mypy sees the mapped packages; re-run after adding a module.
$(STAMP_RUN): pyproject.toml | $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[train]" --config-settings editable_mode=strict
	@touch $@

$(STAMP): pyproject.toml | $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[dev]" --config-settings editable_mode=strict
	@touch $@ $(STAMP_RUN)

venv: $(STAMP_RUN)

dev: $(STAMP)

demo: $(STAMP_RUN)
	@$(BIN)/python -m cardtune.demo

# What instruction tuning buys, measured on CPU (docs/evidence.md): build, tune, evaluate, compare.
# `make compare QUICK=1` runs a few steps per card (what tests/test_experiment.py checks).
compare: $(STAMP_RUN)
	@$(BIN)/python -m cardtune.experiment $(if $(QUICK),--quick)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP)
	@# refresh the strict editable install when a module was added since the last one
	@if [ -n "$$(find cardtune curate train templates -newer $(STAMP) -name '*.py' -o -newer $(STAMP) -name '*.yaml' | head -1)" ]; then \
		$(BIN)/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=strict && touch $(STAMP); fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/python -m cardtune.curate.card.cardref > data_cards/README.md

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
