# Two commands: `make demo` and `make test`. Each creates .venv with python3 if it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test docs lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: the core install, and the full one (torch first, pinned, so nothing pulls a CUDA build).
$(VENV)/.core-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[runner,test,docs]'
	touch $@ $(VENV)/.core-installed

demo: $(VENV)/.core-installed
	$(BIN)/coupled demo

test: $(VENV)/.all-installed docs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.all-installed
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

# The documentation site (mkdocs.yml, docs/), strict: any warning fails. Output in site/.
docs: $(VENV)/.all-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis site
