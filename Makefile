# pybroker: `make run` starts a single node on localhost:9092; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
APT_PACKAGES := kcat zookeeper nftables iproute2 docker-compose openssl chromium chromium-driver gcc
# Node clients the integration tests drive (kafkajs), pinned in tests/js/package-lock.json.
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
KAFKA_LIB := .kafka/lib
KAFKA_STAMP := $(KAFKA_LIB)/.installed
MVN_DEPENDENCY := org.apache.maven.plugins:maven-dependency-plugin:3.8.1

.PHONY: kafka-deps install install-test run cluster cluster-stop test test-unit bench bench-quick fuzz lint format clean apt-deps js-deps java-driver

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP) $@

install: $(STAMP)

install-test: $(TEST_STAMP) apt-deps js-deps kafka-deps java-driver

# npm ci installs exactly the lock file's versions; needs node and npm (Node 20+).
js-deps: $(JS_STAMP)

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

# Apache Kafka 4.1's jars (the reference broker and Kafka's CLI tools), resolved by Maven
# from tests/kafka_ref/pom.xml into .kafka/lib; see tests/support/kafka_ref.py.
kafka-deps: $(KAFKA_STAMP)

$(KAFKA_STAMP): tests/kafka_ref/pom.xml
	rm -rf $(KAFKA_LIB)
	mvn -q -B -f tests/kafka_ref/pom.xml $(MVN_DEPENDENCY):copy-dependencies \
		-DoutputDirectory=$(abspath $(KAFKA_LIB))
	touch $@

# The Java client test driver (tests/java: scenarios on kafka-clients 4.1.1), compiled into
# tests/java/target (classes plus a lib folder of jars); see tests/support/java_driver.py.
JAVA_DIR := tests/java
JAVA_STAMP := $(JAVA_DIR)/target/.built
JAVA_SOURCES := $(shell find $(JAVA_DIR)/src -type f 2>/dev/null)

java-driver: $(JAVA_STAMP)

$(JAVA_STAMP): $(JAVA_DIR)/pom.xml $(JAVA_SOURCES)
	rm -rf $(JAVA_DIR)/target
	mvn -q -B -f $(JAVA_DIR)/pom.xml compile
	touch $@

# Debian packages the tests drive (kcat; ZooKeeper; nft and ip for network cuts in
# namespaces; docker-compose to validate docker/). Installed only when missing.
apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: install
	mkdir -p data
	$(VENV)/bin/pybroker --config config/server.properties

# ZooKeeper and three brokers as local processes (ports 2181, 9092-9094; data and logs in
# data/cluster): the docker-compose topology without Docker. Ctrl-C or `make cluster-stop`.
cluster: install
	@dpkg -s zookeeper >/dev/null 2>&1 || $(MAKE) apt-deps
	$(PY) -m pybroker.broker.local_cluster --config-dir config/cluster --data data/cluster

cluster-stop:
	@if [ -f data/cluster/cluster.pid ]; then kill -TERM $$(cat data/cluster/cluster.pid); \
	else echo "no cluster running (data/cluster/cluster.pid is missing)"; fi

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest tests -q -p no:cacheprovider -W ignore::DeprecationWarning --durations=30

test-unit: install-test
	$(PY) -m pytest tests/unit -q

# bench_vs_kafka.py: pybroker beside Apache Kafka 4.1 in the same run (about 25 minutes;
# results in bench-results/<time>/). `make bench-quick` runs only it, one short round.
bench: install-test
	$(PY) tests/bench/bench_vs_kafka.py
	$(PY) tests/bench/bench_broker.py
	$(PY) tests/bench/bench_storage.py
	$(PY) tests/bench/bench_decode.py
	$(PY) tests/bench/bench_cluster.py
	$(PY) tests/bench/bench_cores.py
	$(PY) tests/bench/bench_down_conversion.py
	$(PY) tests/bench/bench_tls.py
	$(PY) tests/bench/bench_metrics.py

bench-quick: install-test
	$(PY) tests/bench/bench_vs_kafka.py --quick

# Issue 8's long fuzz run: 1,000,000 malformed requests against a real broker (tests/fuzz).
# `make test` runs a bounded slice (tests/integration/test_fuzz_slice.py).
fuzz: install-test
	$(PY) -m tests.fuzz --cases $${FUZZ_CASES:-1000000} --seed $${FUZZ_SEED:-1}

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) data build dist *.egg-info .pytest_cache .ruff_cache .hypothesis $(JS_DIR)/node_modules $(JAVA_DIR)/target
