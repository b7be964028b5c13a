# Keysmith. `make demo`, `make test`, `make bench`, `make lint`; helpers `venv`, `build`, `clean`.
# The local AWS stack (moto, awscli, cfn-lint, cargo-lambda) lives in .venv/, installed from
# infra/requirements.txt; Rust tests and tools find it through KEYSMITH_VENV.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

VENV := .venv
PYTHON ?= python3
export KEYSMITH_VENV := $(CURDIR)/$(VENV)

.PHONY: demo test bench lint venv build clean

demo: venv build
	cargo run -p keysmith-tests --bin demo

test: venv build
	cargo test --workspace

bench: venv
	@echo 'make bench: the benchmark report (cold start, memory, size) is not built yet; see the bench issue.'

lint: venv
	cargo fmt --all --check
	$(VENV)/bin/cfn-lint template.yaml
	cargo clippy --workspace --all-targets -- -D warnings

venv: $(VENV)/.installed

$(VENV)/.installed: infra/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

build:
	cargo build --workspace --bins

clean:
	rm -rf target $(VENV)
