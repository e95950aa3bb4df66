#!/usr/bin/env python3
"""Check the committed audio fixtures against manifest.json.

Run with the fixture venv (numpy + soundfile):  .venv/bin/python verify_fixtures.py
Uses libsndfile (soundfile) to decode, and `sox --i` / `ffprobe` as a second
opinion on rate, channels and duration.  Exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
REQUIRED_RATES = {8000, 16000, 44100, 48000}
REQUIRED_CODECS = {"pcm_s16le", "flac", "vorbis"}


def header_info(path: Path) -> tuple[int, int, float]:
    """(rate, channels, duration_s) from sox --i, or ffprobe for Ogg Opus."""
    if path.suffix == ".opus" or not shutil.which("sox"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=sample_rate,channels:format=duration", "-of", "json", str(path)],
            capture_output=True, text=True, check=True).stdout
        j = json.loads(out)
        s = j["streams"][0]
        return int(s["sample_rate"]), int(s["channels"]), float(j["format"]["duration"])
    def soxi(flag: str) -> str:
        return subprocess.run(["sox", "--i", flag, str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    return int(float(soxi("-r"))), int(soxi("-c")), float(soxi("-D"))


def frame_db(mono: np.ndarray, sr: int, frame_s: float) -> np.ndarray:
    n = int(round(frame_s * sr))
    k = len(mono) // n
    rms = np.sqrt(np.mean(mono[: k * n].reshape(k, n) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def main() -> int:
    manifest = json.loads((HERE / "manifest.json").read_text())
    assert manifest["version"] == 1
    frame_s = manifest["analysis"]["frame_s"]
    errors: list[str] = []
    total = 0
    for c in manifest["clips"]:
        path = HERE / c["file"]
        name = c["file"]
        if not path.is_file():
            errors.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        total += size
        if size != c["bytes"]:
            errors.append(f"{name}: size {size} != manifest {c['bytes']}")
        data, sr = sf.read(path, dtype="float64", always_2d=True)
        dur = len(data) / sr
        hr, hc, hd = header_info(path)
        if sr != c["sample_rate"] or hr != c["sample_rate"]:
            errors.append(f"{name}: rate {sr}/{hr} != {c['sample_rate']}")
        if data.shape[1] != c["channels"] or hc != c["channels"]:
            errors.append(f"{name}: channels {data.shape[1]}/{hc} != {c['channels']}")
        if abs(dur - c["duration_s"]) > 0.002:
            errors.append(f"{name}: decoded duration {dur:.4f} != {c['duration_s']}")
        # MP3 headers count the encoder delay and padding (gapless info is in the LAME tag)
        if abs(hd - c["duration_s"]) > (0.15 if c["codec"] == "mp3" else 0.03):
            errors.append(f"{name}: header duration {hd:.4f} != {c['duration_s']}")
        db = frame_db(data.mean(axis=1), sr, frame_s)
        thr = c["voicing_threshold_dbfs"]
        voiced = np.flatnonzero(db > thr + 0.05)
        if c["last_voiced_s"] is None:
            if len(voiced):
                errors.append(f"{name}: voiced frames found in a no-speech clip")
        else:
            last_end = (voiced[-1] + 1) * frame_s
            # the rounded threshold may flip a frame at the edge: allow two frames of slack
            if not -2 * frame_s <= last_end - c["last_voiced_s"] <= 3 * frame_s:
                errors.append(f"{name}: last voiced frame ends {last_end:.3f}, manifest {c['last_voiced_s']}")
            if not c["last_voiced_s"] < c["duration_s"]:
                errors.append(f"{name}: last_voiced_s after the end")
        for p in c["pauses"]:
            a = int(np.ceil(p["start_s"] / frame_s)) + 1
            b = int(np.floor(p["end_s"] / frame_s)) - 1
            if not 1.5 <= p["end_s"] - p["start_s"] <= 4.0 + 1e-6:
                errors.append(f"{name}: pause length {p}")
            if b > a and np.max(db[a:b]) > thr:
                errors.append(f"{name}: pause {p} has a frame at {np.max(db[a:b]):.1f} dBFS > {thr}")
        if c["item_id"] is not None:
            words = c["reference_text"].split()
            if len(words) < 15:
                errors.append(f"{name}: reference text too short")
            if any(ch.isdigit() for ch in c["reference_text"]):
                errors.append(f"{name}: digits in reference text")
        print(f"ok  {name:62s} {sr:6d} Hz {data.shape[1]} ch {dur:7.3f} s {size / 1024:8.1f} KiB")

    answers = [c for c in manifest["clips"] if c["item_id"] is not None]
    rates = {c["sample_rate"] for c in manifest["clips"]}
    codecs = {c["codec"] for c in manifest["clips"]}
    checks = {
        "16 answers (8 items x strong/weak)": len(answers) == 16 and
            len({(c["item_id"], c["quality"]) for c in answers}) == 16,
        "sample rates 8k/16k/44.1k/48k": REQUIRED_RATES <= rates,
        "wav, flac and ogg vorbis present": REQUIRED_CODECS <= codecs,
        "an ogg opus file": "opus" in codecs,
        "a stereo file": any(c["channels"] == 2 for c in manifest["clips"]),
        ">= 5 answers with a 2-4 s pause": sum(
            any(2.0 <= p["end_s"] - p["start_s"] <= 4.0 for p in c["pauses"]) for c in answers) >= 5,
        ">= 2 noisy clips at 20 dB SNR": sum(c["noise_snr_db"] == 20 for c in answers) >= 2,
        ">= 4 voices": len({c["voice"] for c in answers}) >= 4,
        ">= 6 piper answers": sum(c["voice"].startswith("piper") for c in answers) >= 6,
        "fillers in some answers": sum(bool(c["fillers"]) for c in answers) >= 3,
        "silence and noise clips": {"silence", "noise"} <= {c["quality"] for c in manifest["clips"]},
        "total under 10 MB": total < 10_000_000,
    }
    for what, ok in checks.items():
        if not ok:
            errors.append(f"set requirement failed: {what}")
    print(f"total {total} bytes ({total / 1e6:.2f} MB) in {len(manifest['clips'])} files")
    if errors:
        print("\n".join("FAIL " + e for e in errors), file=sys.stderr)
        return 1
    print("all fixture checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
