# Keysmith. `make demo`, `make test`, `make bench`, `make lint`; helpers `venv`, `build`, `clean`.
# The local AWS stack (moto, awscli, cfn-lint, cargo-lambda) lives in .venv/, installed from
# infra/requirements.txt; Rust tests and tools find it through KEYSMITH_VENV.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

VENV := .venv
PYTHON ?= python3
export KEYSMITH_VENV := $(CURDIR)/$(VENV)

LINT_VENV := .venv-lint
SIMULATOR := infra/simulator
JS_TESTS := tests/js
DEPLOY_VENV := .venv-deploy
export SAM_CLI_TELEMETRY := 0

.PHONY: js-tests browser demo test bench bench-scale bench-audit lint venv lint-venv deploy-venv deploy-build build clean dev fuzz simulate simulator

# `build` compiles every binary of the workspace (demo included) with one feature resolution; a
# separate `cargo run -p …` would resolve features per package and build the dependency graph again.
demo: venv build
	target/debug/demo

# The crash-after-every-call rotation test drives hundreds of moto transactions, each deep-copying
# the tables: beside the other tests on 2 cores its audit writes ran out of retries, so it runs
# alone, after the rest; so does the 100,000-lease profile revoke (its own moto, whose index
# queries scan the whole table: CPU-bound, it must not share the 2 cores).
# Test threads get 8 MiB of stack, as a Lambda function's main thread has: unoptimised (debug)
# futures of the API's routes and jobs are many times their release size, and a test's
# `block_on` holds them on its thread's stack (2 MiB by default overflowed in a profile revoke).
test: export RUST_MIN_STACK = 8388608
test: venv build js-tests browser
	cargo test --workspace -- --skip rotation_through_an_admin_secret_and_role_converges_after_any_crash --skip a_profile_revoke_over_100000_stored_leases
	cargo test --workspace --test rotation rotation_through_an_admin_secret_and_role_converges_after_any_crash
	cargo test --workspace --test revocation_truth a_profile_revoke_over_100000_stored_leases -- --nocapture

# SPEC 14: N due rotations (default 1,000) through RotationQueue and WORKERS worker processes of
# the release scheduled-rotation; writes target/bench/scale.md.
N ?= 1000
WORKERS ?= 4
bench-scale: venv
	cargo build --release -p issue-credentials -p scheduled-rotation -p secret-rotation -p hello-lambda
	cargo build --release -p keysmith-cli
	cargo build --workspace --bins
	N=$(N) WORKERS=$(WORKERS) target/debug/bench_scale

# The functions and the client are built apart in release, as `sam build` builds each function
# alone: cargo unifies features per build, and the client's aws-config features
# (credentials-process, sso) are not the functions' (they would weigh on their cold start).
# Issue 26: sealing AUDIT_ITEMS audit items (default 100,000) in one period, verifying them
# offline, and GET /v1/audit latency across the 16 shards.
AUDIT_ITEMS ?= 100000
bench-audit: venv
	cargo build --workspace --bins
	N=$(AUDIT_ITEMS) target/debug/bench_audit

bench: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	cargo build --release -p issue-credentials -p scheduled-rotation -p secret-rotation -p hello-lambda
	cargo build --release -p keysmith-cli
	cargo build -p keysmith-tests --bin bench
	target/debug/bench

# The whole product on 127.0.0.1 against moto (tests/src/dev.rs): the API on :8080 behind a
# SigV4-checking gateway, the three functions, a schedule, example profiles; prints the lines
# that point a shell at it, as the admin and as a non-admin. `make dev ARGS="--port 9090"`.
# The README test (tests/tests/readme.rs) starts the same binary.
dev: venv build
	target/debug/keysmith-dev up $(ARGS)

# schemathesis against the gateway with the OpenAPI document: at least 10 000 generated requests.
fuzz: venv build
	KEYSMITH_FUZZ_EXAMPLES=$${KEYSMITH_FUZZ_EXAMPLES:-1000} cargo test -p keysmith-tests --test gateway schemathesis -- --nocapture

# Formatting, the template (cfn-lint, SAM's own validation, checkov with every remaining finding
# skipped in the resource's Metadata with its reason, parliament over every IAM policy), the same
# but SAM for infra/target-account.yaml, the IAM simulator over every policy (below), clippy.
lint: venv lint-venv deploy-venv simulator
	cargo fmt --all --check
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/cfn-lint infra/target-account.yaml
	$(DEPLOY_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	$(LINT_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation --file template.yaml
	$(LINT_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation --file infra/target-account.yaml
	$(LINT_VENV)/bin/python infra/lint_policies.py template.yaml
	$(LINT_VENV)/bin/python infra/lint_policies.py infra/target-account.yaml
	$(MAKE) --no-print-directory simulate
	cargo clippy --workspace --all-targets -- -D warnings

# SPEC 18: @cloud-copilot/iam-simulate (pinned by package-lock.json, installed with npm ci) over
# every function role and RotatorRole as SAM builds them (template_policies.py resolves the
# template under each parameter set of parameters.json), the lease boundary, and the policies
# the Rust code writes (printed by the code: the `policies` binary), against the tables in
# expectations/. Any mismatch fails, printed.
simulate: lint-venv simulator
	mkdir -p target/policies
	$(LINT_VENV)/bin/python $(SIMULATOR)/template_policies.py template.yaml $(SIMULATOR)/parameters.json > target/policies/template.json
	cargo run --quiet -p keysmith-tests --bin policies > target/policies/code.json
	node $(SIMULATOR)/simulate.mjs target/policies/template.json target/policies/code.json $(SIMULATOR)/expectations

venv: $(VENV)/.installed
js-tests: $(JS_TESTS)/node_modules/.installed

# The cross-SDK test's AWS SDK for JavaScript v3 (pinned by tests/js/package-lock.json).
$(JS_TESTS)/node_modules/.installed: $(JS_TESTS)/package-lock.json
	cd $(JS_TESTS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The ui tests drive a real headless browser: Debian's chromium, installed when missing (as root,
# or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
lint-venv: $(LINT_VENV)/.installed
deploy-venv: $(DEPLOY_VENV)/.installed
simulator: $(SIMULATOR)/node_modules/.installed

$(SIMULATOR)/node_modules/.installed: $(SIMULATOR)/package-lock.json
	cd $(SIMULATOR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

$(LINT_VENV)/.installed: infra/lint-requirements.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/lint-requirements.txt
	touch $@

$(DEPLOY_VENV)/.installed: infra/deploy-requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/deploy-requirements.txt
	touch $@

# The arm64 artifacts for `sam deploy`: the aarch64 target, `sam build` (cargo-lambda, zig), then a
# check that every bootstrap is aarch64 and needs no glibc newer than AL2023's. The first build
# compiles the AWS SDK for another architecture: several minutes on a small machine.
deploy-build: deploy-venv
	rustup target add aarch64-unknown-linux-gnu
	@echo "sam build: the first build takes several minutes (cargo's progress follows)"
	PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" $(DEPLOY_VENV)/bin/sam build --beta-features
	$(PYTHON) infra/check_bootstrap.py .aws-sam/build

$(VENV)/.installed: infra/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

build:
	cargo build --workspace --bins

clean:
	rm -rf target $(VENV) $(LINT_VENV) $(DEPLOY_VENV) .aws-sam $(SIMULATOR)/node_modules $(JS_TESTS)/node_modules
