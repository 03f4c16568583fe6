# Two commands for a new user: `make quickstart` (set up, then run the quickstart) and `make test`.
# Each creates the environment in .venv when it is missing (or when pyproject.toml changed).
#
# torch is installed first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build. To get the CPU
# build from PyTorch's own index on an ordinary machine:  make quickstart TORCH_INDEX=https://download.pytorch.org/whl/cpu

VENV := .venv
TORCH := torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup quickstart test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(VENV)/bin/probekit run examples/quickstart.yaml

test: setup
	$(VENV)/bin/python -m pytest
