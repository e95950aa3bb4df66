#!/usr/bin/env bash
# Runs the faster-whisper peer: setup (idempotent, seconds when already done), then the script.
#   bench/peers/run.sh --fast --clips 'med-*' --out /tmp/peer.jsonl
# Relative paths (--fixtures, --out) are taken from the directory it is called from; the
# default --fixtures is the repository's audio-fixtures/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NEXTMARK_HOME="${NEXTMARK_HOME:-$HOME/.cache/nextmark}"
export NEXTMARK_HOME
bash "$HERE/setup.sh"
fixtures=()
case " $* " in *" --fixtures "*|*" --fixtures="*) ;; *) fixtures=(--fixtures "$ROOT/audio-fixtures") ;; esac
exec "$NEXTMARK_HOME/peer-venv/bin/python" "$HERE/faster_whisper_peer.py" "${fixtures[@]}" "$@"
