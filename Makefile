# Keysmith. `make demo`, `make test`, `make bench`, `make lint`; helpers `venv`, `build`, `clean`.
# The local AWS stack (moto, awscli, cfn-lint, cargo-lambda) lives in .venv/, installed from
# infra/requirements.txt; Rust tests and tools find it through KEYSMITH_VENV.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

VENV := .venv
PYTHON ?= python3
export KEYSMITH_VENV := $(CURDIR)/$(VENV)

.PHONY: demo test bench lint venv build clean dev fuzz

demo: venv build
	cargo run -p keysmith-tests --bin demo

test: venv build
	cargo test --workspace

bench: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	cargo build --release -p issue-credentials -p scheduled-rotation -p secret-rotation -p hello-lambda -p keysmith-cli
	cargo build -p keysmith-tests --bin bench
	target/debug/bench

# The API on 127.0.0.1:8080 (a local HTTP gateway in front of the built function, against moto).
dev: venv build
	cargo run -p keysmith-tests --bin gateway -- $(ARGS)

# schemathesis against the gateway with the OpenAPI document: at least 10 000 generated requests.
fuzz: venv build
	KEYSMITH_FUZZ_EXAMPLES=$${KEYSMITH_FUZZ_EXAMPLES:-1000} cargo test -p keysmith-tests --test gateway schemathesis -- --nocapture

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
