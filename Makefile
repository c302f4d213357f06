# Two commands for a fresh machine:
#   make demo   create .venv, install vaekit (CPU torch), train + evaluate a small VAE
#   make test   create .venv, install vaekit with test extras, run the whole test suite
# and   make docs   build the documentation site into site/ (mkdocs build --strict: warnings are errors)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real datasets beside the checkout (offline machines); otherwise the user cache / download.
DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export VAEKIT_DATA := $(or $(VAEKIT_DATA),$(DATA))

.PHONY: demo test docs install bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/vaekit demo

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# the site (mkdocs.yml): guides, the gallery, the API reference from the docstrings; open site/index.html
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# speed on this machine (CPU, or add DEVICE=cuda); results go to benchmarks/results/ with the device named
DEVICE ?= cpu
bench: $(VENV)/.installed
	$(PY) benchmarks/train_throughput.py --device $(DEVICE)
	$(PY) benchmarks/iwae_speed.py --device $(DEVICE)
	$(PY) benchmarks/ais_speed.py --device $(DEVICE)
	$(PY) benchmarks/local_opt_speed.py --device $(DEVICE)
	$(PY) benchmarks/reproduce_cremer2018.py --short --device $(DEVICE)

clean:
	rm -rf $(VENV) runs .pytest_cache site
