# kubetrio: `make up` (install what is missing, start a local cluster) and `make test`.
# Every install step is idempotent: a stamp file records what was installed from which inputs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := plugins/scheduler plugins/cni_calico plugins/storage plugins/auth plugins/csi
# Debian packages the tests and the node agent use; installed only when running as root.
APT_PACKAGES := runc nftables python3-nftables busybox-static docker-registry skopeo umoci \
	etcd-server etcd-client bird2 iproute2 iperf3 nginx-light iputils-ping procps \
	fuse3 libnfs13 nfs-ganesha nfs-ganesha-vfs libfaketime
RUST_INPUTS := Cargo.toml $(shell find rust -name '*.rs' -o -name Cargo.toml 2>/dev/null)
PY_INPUTS := pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
SITE := $(VENV)/lib/python3.11/site-packages
PYTEST_ARGS ?=

.PHONY: setup system up down test lint bench bench-datapath clean

setup: system $(VENV)/.installed $(SITE)/nftables  ## install everything (idempotent)

system:  ## Debian packages (as root; skipped otherwise)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" != 0 ]; then echo "system packages missing (run as root to install): $$missing"; \
	else echo "installing system packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip

# The core (with the Rust extension, built by maturin) and the plugins, editable.
$(VENV)/.installed: $(BIN)/python $(PY_INPUTS) $(RUST_INPUTS)
	@echo "installing kubetrio, its Rust extension and the built-in plugins into $(VENV)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

# Debian's python3-nftables is pure Python over libnftables; link just that package into
# the venv rather than exposing all of Debian's dist-packages (PyPI has no nftables).
$(SITE)/nftables: $(BIN)/python
	@if [ -d /usr/lib/python3/dist-packages/nftables ]; then \
	  ln -sfn /usr/lib/python3/dist-packages/nftables $@; echo "linked nftables bindings"; \
	else echo "python3-nftables not installed: nftables bindings unavailable"; fi

up: setup  ## install, then start a local cluster
	$(BIN)/kubetrio up

down:  ## stop the local cluster
	$(BIN)/kubetrio down

# Three pytest processes side by side: the tests that start a node (marked `node` by
# tests/conftest.py: netns, nft, runc, mounts, fixed ports) one after another in one, but
# those marked `apart` too (everything host-wide of their own), one after another in a
# second, the rest in the third; then the tests that change the venv itself (`serial`)
# alone. Each log is printed when its run ends; exit status 5 (nothing selected, e.g. with
# a path in PYTEST_ARGS) counts as success for the three.
test: setup  ## run the test suite
	@rm -rf .test-logs && mkdir -p .test-logs /tmp/kubetrio-tests; \
	$(BIN)/pytest -m "node and not apart and not serial" --basetemp=/tmp/kubetrio-tests/node \
	  $(PYTEST_ARGS) > .test-logs/node.log 2>&1 & node=$$!; \
	$(BIN)/pytest -m "apart and not serial" --basetemp=/tmp/kubetrio-tests/apart $(PYTEST_ARGS) \
	  > .test-logs/apart.log 2>&1 & apart=$$!; \
	$(BIN)/pytest -m "not node and not serial" --basetemp=/tmp/kubetrio-tests/shared $(PYTEST_ARGS) \
	  > .test-logs/shared.log 2>&1 & shared=$$!; \
	wait $$shared; s=$$?; echo "=== tests without a node (exit $$s)"; cat .test-logs/shared.log; \
	wait $$apart; a=$$?; echo "=== tests with a node of their own (exit $$a)"; cat .test-logs/apart.log; \
	wait $$node; n=$$?; echo "=== tests with a node (exit $$n)"; cat .test-logs/node.log; \
	echo "=== tests that change the venv"; $(BIN)/pytest -m serial $(PYTEST_ARGS); v=$$?; \
	for rc in $$s $$a $$n; do [ $$rc = 0 ] || [ $$rc = 5 ] || exit 1; done; [ $$v = 0 ] || [ $$v = 5 ]

lint: setup  ## ruff, mypy, stubtest, generated CSI stubs, import layers, rustfmt, clippy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases --exclude 'tests/(sample_plugin|compat/upstream_examples)' tests
	$(BIN)/mypy --strict $(foreach p,$(PLUGINS),$(p)/kubetrio_$(notdir $(p)))
	$(BIN)/python -m mypy.stubtest kubetrio._datapath
	$(BIN)/python scripts/gen_csi_stubs.py --check
	$(BIN)/lint-imports --no-cache
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: setup  ## run every benchmark; each prints a JSON line last
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

bench-datapath: setup  ## only the datapath benchmarks
	@set -e; for b in benchmarks/datapath_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) target
