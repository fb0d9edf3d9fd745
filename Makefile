# Quick start: `make demo` (main job) and `make test`. Both install into .venv first.
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

.PHONY: install demo test clean

install: $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: install
	$(PY) -m flows.demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache artifacts
