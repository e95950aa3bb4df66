#!/usr/bin/env bash
# `make fuzz`: builds the cargo-fuzz targets under fuzz/ and runs each for FUZZ_SECONDS (default
# 600), FUZZ_JOBS (default 2) at a time, seeded from the repository's own rubrics, fixtures and
# protocol examples. A crash stops with the reproducer under fuzz/artifacts/<target>/; turn it
# into a regression test. Logs: fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes unstable -Z flags; this machine has only a stable toolchain.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/nextmark/fuzz-target}
seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-rubric protocol audio_file audio_stream signalling model_headers}

# Seeds: real inputs of each kind, with the selector byte the target reads first.
seed() { # target name bytes-file [prefix-byte]
  local dir="$root/fuzz/corpus/$1"; mkdir -p "$dir"
  # Heads of large files: headers and the first frames are where parsers branch.
  if [ -n "${4:-}" ]; then { printf "\\x$4"; head -c 16384 "$3"; } > "$dir/$2"; else cp "$3" "$dir/$2"; fi
}
for f in rubrics/*.toml; do seed rubric "$(basename "$f")" "$f"; done
i=0
for msg in \
  '{"type":"hello","protocol":1,"audio":{"encoding":"pcm_s16le","sample_rate":16000,"channels":1}}' \
  '{"type":"hello","protocol":1,"audio":{"encoding":"webrtc"},"speech":{"sample_rate":24000}}' \
  '{"type":"text","text":"I would order a troponin"}' '{"type":"done"}' '{"type":"ping","nonce":7}' \
  '{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0"}}' \
  '{"type":"playback_ended"}' '{"type":"typing"}' '{"type":"bye"}'; do
  mkdir -p fuzz/corpus/protocol; printf '%s' "$msg" > "fuzz/corpus/protocol/seed-$i"; i=$((i + 1))
done
n=0
for f in audio-fixtures/*; do
  case "$f" in *.wav) p=01;; *.flac) p=02;; *.ogg) p=03;; *.opus) p=04;; *.mp3) p=05;; *) continue;; esac
  seed audio_file "$(basename "$f")" "$f" "$p"; n=$((n + 1))
done
mkdir -p fuzz/corpus/signalling fuzz/corpus/audio_stream fuzz/corpus/model_headers
printf '\x00v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n' > fuzz/corpus/signalling/offer
printf '\x02candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host' > fuzz/corpus/signalling/candidate
head -c 4000 /dev/urandom > fuzz/corpus/audio_stream/noise
model="${NEXTMARK_HOME:-$HOME/.cache/nextmark}/models/ggml-tiny.en.bin"
if [ -f "$model" ]; then { printf '\x01'; head -c 65536 "$model"; } > fuzz/corpus/model_headers/ggml-head; fi

mkdir -p fuzz/logs
echo "fuzz: building ${targets} (first build: several minutes)"
(cd fuzz && cargo fuzz build --sanitizer none --debug-assertions)
run() {
  local t=$1
  local rc=0
  (cd fuzz && cargo fuzz run "$t" --sanitizer none --debug-assertions -- \
     -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1) \
     > "fuzz/logs/$t.log" 2>&1 || rc=$?
  local runs; runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -eq 0 ]; then echo "fuzz: $t: $runs runs in ${seconds} s, no crash"
  else echo "fuzz: $t: FAILED (exit $rc), see fuzz/logs/$t.log and fuzz/artifacts/$t/"; fi
  return $rc
}
status=0
pids=()
for t in $targets; do
  run "$t" & pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
