# Two commands a newcomer needs: `make demo` and `make test`. Both install into .venv first if needed.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint typecheck bench evaluate train clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so nothing later can pull a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/qpm-screen screen sample_policies/docs --out out/demo

lint: install
	$(BIN)/ruff check pipeline tests tools
	$(BIN)/ruff format --check pipeline tests tools

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/pytest -q

bench: install
	$(BIN)/qpm-screen bench --json

evaluate: install
	$(BIN)/qpm-screen evaluate ../shared/dev-corpus/docs ../shared/dev-corpus/labels.csv

train: install
	$(BIN)/qpm-screen train

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
