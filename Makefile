# Two commands matter: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/nextmark/target
export NEXTMARK_HOME ?= $(HOME)/.cache/nextmark
CARGO ?= cargo
NEXTMARK = $(CARGO_TARGET_DIR)/debug/nextmark

.PHONY: run test setup model build gates unit fixtures bench fuzz

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

model: build
	@$(NEXTMARK) model install >/dev/null

# The server on http://127.0.0.1:8080 with an embedded SQLite database, plus demo reviewer and
# admin accounts whose credentials it prints.
run: model
	$(NEXTMARK) serve --demo

gates: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

test: model gates
	@if [ -z "$$NEXTMARK_TEST_DATABASE_URL" ]; then \
	  echo "make test: no PostgreSQL given (NEXTMARK_TEST_DATABASE_URL unset): storage tests run on SQLite only; the PostgreSQL variants print SKIPPED"; \
	else echo "make test: PostgreSQL tests use $$NEXTMARK_TEST_DATABASE_URL"; fi
	$(CARGO) test --workspace

# The standard benchmark sweep (release builds; minutes of real-time audio; results under
# bench/results/): transcription path, the decode floor under its final lag, engine turn cost,
# live server at 1/2/4/8 sessions side by side with the faster-whisper peer on the same
# answers at the same concurrency.
bench: model
	$(CARGO) build --release -p nextmark-server -p nextmark-bench
	$(CARGO_TARGET_DIR)/release/nextmark-bench engine
	$(CARGO_TARGET_DIR)/release/nextmark-bench asr --realtime
	$(CARGO_TARGET_DIR)/release/nextmark-bench decode
	$(CARGO_TARGET_DIR)/release/nextmark-bench live --sessions 1,2,4,8 --turns 4 --peer

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser that takes outside input:
# rubrics, socket messages, audio files and streams, WebRTC signalling, model files.
# FUZZ_SECONDS per target (default 600), FUZZ_JOBS at a time (default 2).
fuzz: setup
	@scripts/fuzz.sh
