# Two commands matter: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/nextmark/target
export NEXTMARK_HOME ?= $(HOME)/.cache/nextmark
CARGO ?= cargo
NEXTMARK = $(CARGO_TARGET_DIR)/debug/nextmark
FIXTURE ?= audio-fixtures/med-chest-pain-ed.strong.piper.16k.wav

.PHONY: run test setup model build gates unit fixtures

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

model: build
	@$(NEXTMARK) model install >/dev/null

# Until the live server lands, `make run` transcribes a fixture answer and jfk.wav through the
# same audio path a session uses.
run: model
	$(NEXTMARK) transcribe --json $(FIXTURE) $(wildcard ../shared/audio/jfk.wav)

gates: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

test: model gates
	$(CARGO) test --workspace
