#!/usr/bin/env bash
# Installs what `make run` and `make test` need on a Debian machine, only what is missing.
# Idempotent: when everything is present it runs a handful of `command -v` checks and exits.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
want() { # want CMD PACKAGE
  have "$1" || need_pkgs+=("$2")
}
want cmake cmake
want clang clang
want pkg-config pkg-config
want espeak-ng espeak-ng
want sox sox
want python3 python3
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
# Headless Chromium for the browser tests (tests/e2e/browser.rs); NEXTMARK_NO_BROWSER=1 skips it.
[ -n "${NEXTMARK_NO_BROWSER:-}" ] || have chromium || have chromium-browser || need_pkgs+=(chromium)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_pkgs[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "setup: installing ${need_pkgs[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq python3-pip >/dev/null
  else
    echo "setup: python3 -m pip is missing" >&2
    exit 1
  fi
fi

if ! have cargo; then
  echo "setup: cargo (the Rust toolchain) is not installed; see https://rustup.rs" >&2
  exit 1
fi

# schemathesis for the API robustness test (tests/e2e/schemathesis.rs), in its own venv.
st_venv="${NEXTMARK_HOME:-$HOME/.cache/nextmark}/schemathesis-venv"
st_version=4.32.5
if [ "$("$st_venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $st_version" ]; then
  echo "setup: installing schemathesis $st_version into $st_venv" >&2
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install -q "schemathesis==$st_version"
fi

# The servers that the end-to-end tests run for real (S3, speech-to-text, nginx).
"$(dirname "${BASH_SOURCE[0]}")/services.sh"
