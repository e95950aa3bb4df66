#!/usr/bin/env bash
# Prepares the Python peer pipeline (faster-whisper + Whisper tiny.en in CTranslate2 format).
# Idempotent: a second run only checks two stamp files and exits in well under a second.
#
#   venv:  ${NEXTMARK_HOME:-~/.cache/nextmark}/peer-venv
#   model: ${NEXTMARK_HOME:-~/.cache/nextmark}/peer-model/{model.bin,config.json,vocabulary.txt,tokenizer.json}
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NEXTMARK_HOME="${NEXTMARK_HOME:-$HOME/.cache/nextmark}"
VENV="$NEXTMARK_HOME/peer-venv"
REQS="$HERE/requirements.txt"
PY="${PYTHON:-python3}"

log() { echo "[peer-setup] $*" >&2; }
mkdir -p "$NEXTMARK_HOME"

# --- virtualenv ------------------------------------------------------------------------------
want_stamp="$(cat "$REQS")"
if [[ -x "$VENV/bin/python" && -f "$VENV/.nextmark-peer-stamp" ]] \
   && [[ "$(cat "$VENV/.nextmark-peer-stamp")" == "$want_stamp" ]]; then
  :
else
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      log "python3-venv missing: installing it with apt"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      log "error: '$PY -m venv' is unavailable; install python3-venv"; exit 1
    fi
  fi
  log "creating $VENV and installing $(tr '\n' ' ' <"$REQS")"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  printf '%s' "$want_stamp" >"$VENV/.nextmark-peer-stamp"
fi

# --- model -----------------------------------------------------------------------------------
"$HERE/../../scripts/ct2-model.sh" "$VENV/bin/python"
