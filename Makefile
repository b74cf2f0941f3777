# faxfleet: `make demo` runs a local two-site fleet doing real work; `make test` runs the tests.
# Both set up what they need on a fresh Debian machine with Python: system packages via
# apt-get (when root and missing) and Python packages in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench faults system venv clean

demo: system venv
	$(BIN)/faxfleet demo

# One real fax over a software fax line (two iaxmodems; efax answers; needs root).
.PHONY: demo-line
demo-line: system venv
	$(BIN)/faxfleet demo-line

# Two pytest workers: the software-line calls on one, the fleets on the other, the rest
# shared out (tests/conftest.py says why).
test: system venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -p no:cacheprovider -n 2

test-fast: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m "not fleet"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The fault suite, long: processes killed, Redis restarted, sites frozen and cut while
# faxes flow, for FAXFLEET_FAULT_SECONDS (600), on one Redis and on a Sentinel group
# (masters killed and failed over); `make test` runs a 90 s version on one Redis.
faults: system venv
	FAXFLEET_FAULT_SECONDS=$${FAXFLEET_FAULT_SECONDS:-600} FAXFLEET_FAULT_SENTINEL=1 \
		$(BIN)/python -m pytest -p no:cacheprovider -s -m faults tests/test_faults.py

bench: system venv
	$(BIN)/python bench/submit_bench.py

system:
	@./scripts/system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .fleet .pytest_cache .ruff_cache
