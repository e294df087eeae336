# The quick start: `make demo` and `make test`. Both bootstrap what they need.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrap-stamp

.PHONY: all bootstrap demo test unit integration typecheck bench clean

all: test

$(STAMP): setup.cfg pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh

bootstrap: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# mypy runs on a link tree that mirrors the installed layout (virtq.agent -> agent/ …).
typecheck: $(STAMP)
	@rm -rf .typecheck && mkdir -p .typecheck/virtq
	@for f in virtq/*; do ln -s ../../$$f .typecheck/virtq/; done
	@for d in agent console schema; do ln -s ../../$$d .typecheck/virtq/$$d; done
	cd .typecheck && ../$(VENV)/bin/mypy --config-file ../setup.cfg -p virtq

test: $(STAMP) typecheck
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

bench: $(STAMP)
	$(PY) -m pytest -q bench

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache *.egg-info
