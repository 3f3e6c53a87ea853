# The two commands of the README:
#   make demo   set up .venv and run the quickstart on the bundled digits data
#   make test   set up .venv and run the default test suite
# torch is pinned to the CPU build that this machine installs from a local file; set TORCH_SPEC
# to use another build (for example TORCH_SPEC="torch" on a machine with CUDA).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/quickstart
BIN := $(VENV)/bin

.PHONY: demo test setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(wildcard snn5/kernels/csrc/*.cpp) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@# compile the fused CPU kernels once (cached); on failure snn5 uses the reference path
	-$(BIN)/python -m snn5.kernels build
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snn5 quickstart --out $(OUT) --overwrite

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
