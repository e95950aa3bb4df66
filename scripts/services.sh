#!/usr/bin/env bash
# Prepares the local servers that the end-to-end tests run for real, under NEXTMARK_HOME:
#   services-venv/  moto_server (S3 protocol) and faster-whisper-server (OpenAI-style STT)
#   peer-model/     Whisper tiny.en in CTranslate2 format (scripts/ct2-model.sh), shared with the
#                   bench's faster-whisper peer
#   nginx           from apt: the reverse proxy of the two-instance recipe
# Idempotent: when everything is present it compares one stamp file and exits.
set -euo pipefail

NEXTMARK_HOME="${NEXTMARK_HOME:-$HOME/.cache/nextmark}"
VENV="$NEXTMARK_HOME/services-venv"
PY="${PYTHON:-python3}"
# Every top-level package pinned; faster-whisper and ctranslate2 as in bench/peers/requirements.txt.
# boto3 is what moto itself imports, and what the recipes use to sign requests.
PINS="moto[server]==5.2.5 boto3==1.44.8 faster-whisper-server==0.0.3 faster-whisper==1.2.1 ctranslate2==4.8.5"

log() { echo "services: $*" >&2; }
mkdir -p "$NEXTMARK_HOME"

# --- nginx -------------------------------------------------------------------------------------
# It lives in /usr/sbin, which a non-root PATH may lack.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "nginx is missing; run as root or install it with apt-get"
    exit 1
  fi
  log "installing nginx (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi

# --- virtualenv --------------------------------------------------------------------------------
# The stamp holds the pins, so changing one rebuilds the venv; a vanished interpreter does too.
if [ "$(cat "$VENV/.nextmark-stamp" 2>/dev/null)" != "$PINS" ] || [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      log "'$PY -m venv' is unavailable; install python3-venv"
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  log "installing $PINS into $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  # shellcheck disable=SC2086 # PINS is a list of words.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check $PINS
  # One venv only while the two servers agree on their shared dependencies.
  "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null
  printf '%s' "$PINS" >"$VENV/.nextmark-stamp"
fi

# --- model -------------------------------------------------------------------------------------
"$(dirname "${BASH_SOURCE[0]}")/ct2-model.sh" "$VENV/bin/python"
