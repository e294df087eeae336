# The quick start: `make demo` and `make test`. Both bootstrap what they need.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrap-stamp

.PHONY: all bootstrap demo schema test unit integration realhv realhv-deps broker broker-deps prometheus \
	prometheus-deps typecheck bench clean install-unit

all: test

$(STAMP): setup.cfg pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh

bootstrap: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# The schema's generated files (schema/org.libvirt.xml, schema/coverage.json, the end of docs/SCHEMA.md), after
# editing its inputs (docs/SCHEMA.md); the build tool lives in tools/, outside the package.
schema: $(STAMP)
	$(PY) -m tools.schemagen

# mypy runs on a link tree that mirrors the installed layout (virtq.agent -> agent/ …), and on the build tools.
typecheck: $(STAMP)
	@rm -rf .typecheck && mkdir -p .typecheck/virtq
	@for f in virtq/*; do ln -s ../../$$f .typecheck/virtq/; done
	@for d in agent console schema; do ln -s ../../$$d .typecheck/virtq/$$d; done
	@for d in tools tests bench; do ln -s ../$$d .typecheck/$$d; done
	cd .typecheck && ../$(VENV)/bin/mypy --config-file ../setup.cfg -p virtq -p tools -p tests -p bench

# tests/realhv needs a real libvirtd + QEMU. In CI (CI=true) a failed install fails `make test`;
# elsewhere it is reported and the tier skips itself with the reason.
realhv-deps:
	@bash scripts/install-libvirtd.sh || { [ "$${CI:-}" != true ] && \
	  echo "realhv-deps: libvirtd/QEMU could not be installed; tests/realhv will be skipped" >&2; }

# tests/broker needs rabbitmq-server; the tests start private nodes (never the system service). In CI
# (CI=true) a failed install fails `make test`; elsewhere it is reported and the tier skips itself.
broker-deps:
	@bash scripts/install-rabbitmq.sh || { [ "$${CI:-}" != true ] && \
	  echo "broker-deps: rabbitmq-server could not be installed; tests/broker will be skipped" >&2; }

# tests/prometheus needs prometheus and promtool; the tests start private servers (never the system service).
# In CI (CI=true) a failed install fails `make test`; elsewhere it is reported and the tier skips itself.
prometheus-deps:
	@bash scripts/install-prometheus.sh || { [ "$${CI:-}" != true ] && \
	  echo "prometheus-deps: prometheus could not be installed; tests/prometheus will be skipped" >&2; }

test: $(STAMP) typecheck realhv-deps broker-deps prometheus-deps
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

realhv: $(STAMP) realhv-deps
	$(PY) -m pytest -q tests/realhv

broker: $(STAMP) broker-deps
	$(PY) -m pytest -q tests/broker

prometheus: $(STAMP) prometheus-deps
	$(PY) -m pytest -q tests/prometheus

# Benchmarks, not tests: they print measurements (and ratios against a poll baseline measured in the
# same run) and fail only when something functionally broke. Bigger runs: pass arguments, e.g.
# make bench PUSH_ARGS="--running 300 --paused 50 --shutoff 50" LATENCY_ARGS="--cycles 5000"
# The quick fleet (virtq-fleet: 50 agents x 40 VMs, 5 s interval, a 60 s push window and a 60 s poll window,
# about 2.5 minutes); bigger fleets: bench/fleet --agents N --domains M --duration S --via direct|rabbitmq.
PUSH_ARGS ?=
LATENCY_ARGS ?=
INGEST_ARGS ?=
FLEET_ARGS ?= --agents 50 --domains 40 --interval 5 --duration 60 --churn 1
EXPORTER_ARGS ?= --domains 40000
bench: $(STAMP)
	$(PY) -m bench.push_vs_poll $(PUSH_ARGS)
	@echo
	$(PY) -m bench.event_latency $(LATENCY_ARGS)
	@echo
	$(PY) -m bench.ingest $(INGEST_ARGS)
	@echo
	$(PY) -m bench.exporter_scrape $(EXPORTER_ARGS)
	@echo
	$(PY) -m bench.fleetsim $(FLEET_ARGS)

# The systemd unit, with ExecStart pointing at the virtq-agent pip installed (docs/OPERATIONS.md). As root;
# AGENT=/path/to/virtq-agent picks another one, ROOT=DIR installs under DIR (no user made, no systemctl).
install-unit:
	bash scripts/install-unit.sh $(if $(AGENT),--agent $(AGENT)) $(if $(ROOT),--root $(ROOT))

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache *.egg-info
