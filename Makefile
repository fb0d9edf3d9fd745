# Quick start: `make demo` (a full training flow) and `make test`. Both install into .venv first.
VENV      ?= .venv
PY        := $(VENV)/bin/python
# The CPU wheel of torch (on disk on these machines; a bare `torch` may pull a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
EXTRAS    ?= dev
PYTEST_ARGS ?=
comma     := ,

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# mkdocs-material's notice about MkDocs 2.0 on every build: not a warning, just noise.
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test test-fast lint docs docs-serve clean

install: $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: install
	$(PY) -m setfit_pipeline.flows.demo

# Everything: lint, the docs site (a broken link or reference fails), then every test, one pytest-xdist
# worker per core (about 12 minutes on 2 cores).
test: lint docs
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow or e2e (about 3.5 minutes on 2 cores).
test-fast: install
	$(PY) -m pytest -n auto -m "not slow and not e2e" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

docs: install
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir site

docs-serve: install
	$(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) .pytest_cache artifacts site
