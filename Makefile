# Everything a fresh machine needs goes through these targets; each creates
# .venv when it is missing and installs what it needs into it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Defaults for `make run`; override on the command line (make run HTTP_PORT=8010).
GOSSIP_PORT ?= 7946
HTTP_PORT ?= 8000
REDIS_PORT ?= 6380
BIND ?= 127.0.0.1
# Where make run and make cluster keep each node's data (--data-dir), so that
# keys survive a restart; DATA_DIR= (empty) runs in memory only.
DATA_DIR ?= data
NODE ?= node0

.PHONY: run cluster test lint typecheck unit bench bench-http bench-memory bench-cluster bench-resp \
	bench-durability clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-testbed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,testbed]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/twistd --nodaemon --pidfile= disperse \
		--bind $(BIND) --port $(GOSSIP_PORT) --http-port $(HTTP_PORT) \
		--redis-port $(REDIS_PORT) --node-name $(NODE) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)/$(NODE))

# Three nodes on this machine: HTTP 8000-8002, Redis 6380-6382, gossip 7946-7948, joined
# through the first. Ctrl-C stops all three. Each node runs in a session of
# its own, so that the terminal's SIGINT reaches this shell only, and the
# shell sends each node one SIGTERM (a node signalled twice would log its
# stop twice); then it waits for the three to finish handing off.
cluster: $(VENV)/.installed
	@pids=; \
	for i in 0 1 2; do \
		setsid $(BIN)/twistd --nodaemon --pidfile= disperse --bind $(BIND) --profile local \
			--node-name node$$i --port $$((7946 + i)) --http-port $$((8000 + i)) \
			--redis-port $$((6380 + i)) \
			$(if $(DATA_DIR),--data-dir $(DATA_DIR)/node$$i) \
			--peer $(BIND):7946 & \
		pids="$$pids $$!"; \
	done; \
	trap 'trap "" INT TERM; kill -TERM $$pids 2>/dev/null; wait; exit 0' INT TERM; \
	wait

test: lint typecheck unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# Benchmarks need wrk (Debian package) and taskset; see bench/README.md.
bench: bench-http bench-memory bench-cluster bench-resp bench-durability

bench-http: $(VENV)/.installed-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/http

bench-memory: $(VENV)/.installed-test
	$(BIN)/python bench/memory

# Three nodes against one (wrk), then repair after a restart and a kill -9
# under load; see bench/README.md.
bench-cluster: $(VENV)/.installed-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/cluster-http
	$(BIN)/python bench/cluster-repair

# The Redis front end under redis-benchmark, next to a bare Twisted RESP
# server and redis-server (Debian's redis-server and redis-tools, installed
# when missing); see bench/README.md.
bench-resp: $(VENV)/.installed-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq redis-server redis-tools)
	$(BIN)/python bench/resp

# What persistence costs and buys: throughput by fsync mode, restart time
# next to redis-server loading an RDB and an AOF (Debian's redis-server and
# redis-tools, installed when missing), disk space, stalls during a
# snapshot; see bench/README.md.
bench-durability: $(VENV)/.installed-test
	@command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq redis-server redis-tools)
	$(BIN)/python bench/durability

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Wire compatibility with HashiCorp memberlist (Go): builds our Go peer
# offline against Debian's packages, then runs the interop-marked tests.
GO_BUILD_ENV := GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
	GOCACHE=$(CURDIR)/build/go-cache

.PHONY: interop
interop: $(VENV)/.installed-test
	@command -v go >/dev/null \
		&& test -d /usr/share/gocode/src/github.com/hashicorp/memberlist \
		|| (apt-get update -qq \
			&& apt-get install -y -qq golang-go golang-github-hashicorp-memberlist-dev)
	$(MAKE) build/memberlist-peer
	$(BIN)/python -m pytest -m interop tests/interop

# The Go peer alone (bench/gossip-cluster builds it this way when missing).
build/memberlist-peer: $(wildcard interop/memberlist-peer/*.go)
	mkdir -p build
	$(GO_BUILD_ENV) go build -o build/memberlist-peer ./interop/memberlist-peer

# The dashboard in a real headless Chromium: Debian's chromium and
# chromium-driver (installed with apt when missing), driven by Selenium.
$(VENV)/.installed-browser: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,browser]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

.PHONY: browser screenshot
browser: $(VENV)/.installed-browser
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	$(BIN)/python -m pytest -m browser tests/browser

# Refreshes docs/dashboard.png from the browser test's cluster.
screenshot: $(VENV)/.installed-browser
	DISPERSE_SCREENSHOT=docs/dashboard.png $(MAKE) browser

# Real, unmodified Redis clients against real nodes: redis-cli (Debian's
# redis-tools, installed with apt when missing), redis-py with hiredis,
# RedisCluster and Django's RedisCache (the redis-clients extra). Five
# minutes at most: the suites take about a minute.
$(VENV)/.installed-redis-clients: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,redis-clients]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

.PHONY: redis-clients
redis-clients: $(VENV)/.installed-redis-clients
	@command -v redis-cli >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq redis-tools)
	timeout --kill-after=30 300 \
		$(BIN)/python -m pytest -m redisclients tests/redisclients

# The fault bed: the built-in scenarios on network namespaces of this
# machine (needs root; iptables comes from apt), then the report. The
# report is printed whatever the outcome; the status is the suite's. Ten
# minutes at most: the suite takes about seven, the counters across a
# partition (tests/testbed/test_counters.py) half a minute more.
.PHONY: testbed
testbed: $(VENV)/.installed-testbed
	@command -v iptables >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq iptables)
	@rm -f build/testbed/report.txt; status=0; \
	timeout --kill-after=30 600 \
		$(BIN)/python -m pytest -m testbed tests/testbed -p no:cacheprovider \
		|| status=$$?; \
	cat build/testbed/report.txt 2>/dev/null \
		|| echo "no report: the fault bed did not run"; \
	echo "(logs, histories, report.json and timeline plots in build/testbed)"; \
	exit $$status

# Coverage-guided fuzzing of the decoders and the HTTP front (atheris), each
# fuzzer for FUZZ_SECONDS, niced; not part of `make test`. See fuzz/run.py.
FUZZ_SECONDS ?= 600

fuzz: $(VENV)/.installed-test
	$(BIN)/pip install --quiet atheris
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)
