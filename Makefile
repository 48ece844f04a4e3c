# The two commands of the README, and the pieces they are made of.
# Everything installs into .venv and .cache (both git-ignored); every service is started and stopped by pid.

# The virtualenvs are built from the fastest CPython of python3's version on this machine (builds of one
# version differ by up to 1.6x in speed; see cluster/local/pick_python.py). `make PYTHON=...` chooses one.
# Picked on first use only (the eval memoises it), so make runs that build no virtualenv measure nothing.
PYTHON ?= $(eval PYTHON := $(shell python3 cluster/local/pick_python.py || echo python3))$(PYTHON)
VENV   := .venv
APP_REQUIREMENT := -e ".[dev,loadtest]"
# pip retries a refused connection itself (--retries), not a download cut off mid-read (IncompleteRead),
# which failed a fresh clone's install once: such an install is tried once more after a pause.
pip_install = $(1) install -q $(2) || { echo "pip install failed; trying once more in 5 s ..."; sleep 5; $(1) install -q $(2); }
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
QUIX_VENV  := .cache/venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed

.PHONY: demo test unit integration chaos lint bench bench-deps services-start services-stop system-deps clean

demo: $(STAMP) system-deps  ## run a campaign through the app on the embedded local stack
	$(BIN)/clickcash demo $(ARGS)

test: $(STAMP) system-deps  ## the whole suite: unit, integration and chaos, against real services
	$(BIN)/pytest $(ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(ARGS)

integration: $(STAMP) system-deps
	$(BIN)/pytest tests/integration -m "integration and not chaos" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_layers.py  # imports point one way

# clickcash side by side with a passthrough loop, a hand-rolled loop and Quix Streams (report in reports/)
bench: $(STAMP) $(QUIX_STAMP) system-deps
	$(BIN)/clickcash compare $(ARGS)

bench-deps: $(QUIX_STAMP)

# Quix Streams pins an older confluent-kafka than clickcash: it gets a virtualenv of its own under .cache/
$(QUIX_STAMP): loadtest/contenders/requirements-quix.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(call pip_install,$(QUIX_VENV)/bin/pip,--upgrade pip)
	$(call pip_install,$(QUIX_VENV)/bin/pip,-r loadtest/contenders/requirements-quix.txt)
	touch $@

services-start: $(STAMP) system-deps
	$(BIN)/clickcash services start

services-stop: $(STAMP)
	$(BIN)/clickcash services stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call pip_install,$(BIN)/pip,--upgrade pip)
	$(call pip_install,$(BIN)/pip,$(APP_REQUIREMENT))
	touch $@

# Java 17 and Maven run the Kafka broker (jars from Maven Central); redis-server and valgrind come from
# Debian. Each is installed from Debian's packages when missing, so `make demo` and `make test` need nothing
# done by hand.
APT_INSTALL := apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q
PROMTOOL := .cache/prometheus-deb/root/usr/bin/promtool

system-deps:
	@command -v java >/dev/null || { \
		echo "installing Java 17 from Debian's packages ..."; \
		$(APT_INSTALL) openjdk-17-jre-headless >/dev/null; }
	@command -v mvn >/dev/null || { \
		echo "installing Maven from Debian's packages ..."; \
		$(APT_INSTALL) maven >/dev/null; }
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server from Debian's packages ..."; \
		$(APT_INSTALL) redis-server >/dev/null; }
	@# valgrind counts instructions for `clickcash bench --stages --instructions` (and its test)
	@command -v valgrind >/dev/null || { \
		echo "installing valgrind from Debian's packages ..."; \
		$(APT_INSTALL) valgrind >/dev/null; }
	@# promtool (SLO rule checks) from Debian's prometheus package, extracted into .cache/: installing the
	@# package would start a prometheus daemon (its postinst), and only the promtool binary is needed
	@command -v promtool >/dev/null || test -x $(PROMTOOL) || { \
		echo "extracting promtool from Debian's prometheus package into .cache/prometheus-deb ..."; \
		mkdir -p .cache/prometheus-deb && cd .cache/prometheus-deb && \
		{ apt-get download prometheus >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download prometheus >/dev/null; }; } && \
		dpkg -x prometheus_*.deb root; }

clean:
	rm -rf $(VENV) .cache/run .pytest_cache .mypy_cache .ruff_cache
