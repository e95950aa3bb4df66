#!/usr/bin/env python3
"""A peer pipeline to benchmark Nextmark against: what a Pipecat/LiveKit-style voice agent does
with the same Whisper tiny.en weights.

Per clip: 20 ms frames are sent at real-time pace (or on a simulated clock with --fast) to a
streaming Silero VAD (the ONNX model that ships inside faster-whisper); the user's turn ends
after a fixed silence (--end-silence-s, default 0.8 s); the turn's audio is then transcribed in
one batch by faster-whisper (beam 1, English). No partial captions, no semantic end of turn.

Prints one JSON line per clip and a summary line (also written to --out). Progress on stderr.
See README.md beside this file for the metrics.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

SR = 16000
FRAME = 320  # 20 ms at 16 kHz, what a WebRTC/Pipecat transport hands on
SILERO_CHUNK = 512  # samples per Silero decision at 16 kHz (32 ms)
SILERO_CONTEXT = 64  # samples of the previous chunk prepended, as the model expects

# Pipecat's VADParams defaults in its 2024-2025 releases (pipecat/audio/vad/vad_analyzer.py):
# confidence 0.7, start_secs 0.2, stop_secs 0.8. (Newer Pipecat documents stop_secs 0.2, meant
# to be paired with its Smart Turn model; with silence-only endpointing 0.8 s is the setting.)
# The peer takes start_secs and stop_secs from there, but its speech threshold is Silero's own
# default 0.5 (also faster-whisper's VadOptions.threshold): on the 8 kHz fixture Silero's
# probabilities mostly stay between 0.4 and 0.65, so 0.7 misses most of that answer.
PIPECAT_CONFIDENCE = 0.7
SILERO_THRESHOLD = 0.5
PIPECAT_START_SECS = 0.2
PIPECAT_STOP_SECS = 0.8


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Text normalisation and WER: the same rules as the Rust bench (engine/src/text.rs,
# `normalize_for_wer`), so the two WER figures are comparable: lowercase, apostrophes dropped,
# other punctuation (hyphens included) to spaces, "%" -> "percent", hesitations dropped, and
# spelled-out numbers turned into digits ("one hundred and twenty" -> "120"), since Whisper
# writes digits and the fixture references spell numbers out.

_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_HESITATIONS = {"um", "uh", "er", "erm", "ah", "hmm", "mm", "uhm"}


def _small(word: str) -> Optional[int]:
    if word in _UNITS:
        return _UNITS.index(word)
    if word in _TENS:
        return 20 + 10 * _TENS.index(word)
    return None


def _parse_number(tokens: list[str]) -> Optional[tuple[int, int]]:
    total = current = used = 0
    seen = last_tens = False
    while used < len(tokens):
        w = tokens[used]
        n = _small(w)
        if n is not None:
            if seen and current % 10 != 0 and not last_tens:
                break  # "five five" is two numbers
            if seen and current % 100 != 0 and n >= 20:
                break
            current += n
            last_tens = n >= 20 and n % 10 == 0
            seen = True
        elif w == "hundred" and seen:
            current = max(current, 1) * 100
            last_tens = False
        elif w in ("thousand", "million") and seen:
            total += max(current, 1) * (1000 if w == "thousand" else 1_000_000)
            current = 0
            last_tens = False
        elif w == "and" and seen and used + 1 < len(tokens) and _small(tokens[used + 1]) is not None:
            pass
        else:
            break
        used += 1
    return (total + current, used) if seen else None


def normalize(text: str) -> str:
    out = []
    for ch in text.replace("%", " percent "):
        if ch.isalnum():
            out.append(ch.lower())
        elif ch in "'\u2019":
            continue
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def normalize_for_wer(text: str) -> list[str]:
    toks = [w for w in normalize(text).split() if w not in _HESITATIONS]
    out, i = [], 0
    while i < len(toks):
        parsed = _parse_number(toks[i:])
        if parsed:
            out.append(str(parsed[0]))
            i += parsed[1]
        else:
            out.append(toks[i])
            i += 1
    return out


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    r, h = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r):
        cur = [i + 1] + [0] * len(h)
        for j, hw in enumerate(h):
            cur[j + 1] = min(prev[j] + (rw != hw), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[len(h)], len(r)


def nearest_rank(values: list[float], p: float) -> Optional[float]:
    """Nearest-rank percentile, as the Rust bench's stats.rs computes it."""
    if not values:
        return None
    v = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(v)))
    return v[min(rank, len(v)) - 1]


# ----------------------------------------------------------------------------------------------
# VAD


class SileroStream:
    """Silero VAD (faster-whisper's bundled ONNX) run chunk by chunk with its LSTM state kept."""

    def __init__(self) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=opts,
        )
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(SILERO_CONTEXT, dtype=np.float32)

    def prob(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self.context, chunk]).astype(np.float32)[None, :]
        out, self.h, self.c = self.session.run(None, {"input": x, "h": self.h, "c": self.c})
        self.context = chunk[-SILERO_CONTEXT:].astype(np.float32)
        return float(out.reshape(-1)[0])


class EnergyStream:
    """Fallback: frame RMS in dBFS mapped to a pseudo-probability (>= 0.5 means speech)."""

    def __init__(self, on_dbfs: float = -40.0) -> None:
        self.on_dbfs = on_dbfs

    def reset(self) -> None:
        pass

    def prob(self, chunk: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) + 1e-12)
        dbfs = 20 * math.log10(rms)
        return 1.0 / (1.0 + math.exp(-(dbfs - self.on_dbfs) / 3.0))


class TurnDetector:
    """QUIET -> STARTING -> SPEAKING -> STOPPING state machine over VAD decisions, in the manner
    of Pipecat's VAD analyser: a turn starts after `start_s` of unbroken speech and ends after
    `stop_s` of unbroken non-speech. Speech is prob >= confidence; once speaking, a hysteresis
    keeps prob >= confidence - 0.15 as speech (Silero's usual neg_threshold)."""

    def __init__(self, model, confidence: float, start_s: float, stop_s: float) -> None:
        self.model = model
        self.on = confidence
        self.off = max(0.0, confidence - 0.15)
        self.start_n = max(1, round(start_s * SR / SILERO_CHUNK))
        self.stop_n = max(1, round(stop_s * SR / SILERO_CHUNK))
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self.buf = np.zeros(0, dtype=np.float32)
        self.consumed = 0  # samples analysed so far
        self.speaking = False
        self.run = 0  # consecutive chunks contradicting the current state
        self.run_start = 0  # sample where that run began

    def push(self, frame: np.ndarray) -> list[tuple[str, int]]:
        """Feeds one frame; returns events ("start", sample where speech began) and
        ("stop", sample at which the end-of-turn decision was taken)."""
        self.buf = np.concatenate([self.buf, frame])
        events = []
        while len(self.buf) >= SILERO_CHUNK:
            chunk, self.buf = self.buf[:SILERO_CHUNK], self.buf[SILERO_CHUNK:]
            p = self.model.prob(chunk)
            at = self.consumed
            self.consumed += SILERO_CHUNK
            is_speech = p >= (self.off if self.speaking else self.on)
            if is_speech != self.speaking:
                if self.run == 0:
                    self.run_start = at
                self.run += 1
                if not self.speaking and self.run >= self.start_n:
                    self.speaking, self.run = True, 0
                    events.append(("start", self.run_start))
                elif self.speaking and self.run >= self.stop_n:
                    self.speaking, self.run = False, 0
                    events.append(("stop", self.consumed))
            else:
                self.run = 0
        return events


# ----------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class Turn:
    index: int
    start_sample: int  # first sample given to the transcriber (includes the pre-roll)
    end_sample: int  # sample position at which the VAD ended the turn
    end_wall_s: float  # clip-relative wall (or simulated) time of that decision
    ready_wall_s: float = float("nan")
    compute_s: float = 0.0
    text: str = ""
    cut_in: bool = False


@dataclass
class ClipRun:
    turns: list[Turn] = field(default_factory=list)
    last_voiced_sent_wall_s: Optional[float] = None


class Transcriber:
    def __init__(self, model_dir: str, compute_type: str, threads: int) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(
            model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1
        )

    def __call__(self, audio: np.ndarray) -> tuple[str, float]:
        t0 = time.perf_counter()
        segments, _info = self.model.transcribe(
            audio, language="en", beam_size=1, vad_filter=False
        )
        text = " ".join(s.text.strip() for s in segments).strip()  # the generator does the work
        return text, time.perf_counter() - t0


def run_clip(audio: np.ndarray, clip: dict, args, vad: TurnDetector, asr: Transcriber) -> ClipRun:
    """Drives one clip through VAD -> turn end -> transcription and times it."""
    vad.reset()
    run = ClipRun()
    last_voiced = clip.get("last_voiced_s")
    pre_roll = int(args.pre_roll_s * SR)
    # A microphone keeps sending after the answer: pad with silence so the turn can end even if
    # the file stops early, then stop.
    tail = np.zeros(int((args.end_silence_s + 2.0) * SR), dtype=np.float32)
    stream = np.concatenate([audio, tail])
    n_frames = len(stream) // FRAME

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1) if not args.fast else None
    futures = []
    sim_worker_free = 0.0  # --fast: simulated time the transcriber becomes free
    speech_start: Optional[int] = None
    t0 = time.perf_counter()

    for i in range(n_frames):
        frame_end_s = (i + 1) * FRAME / SR
        if args.fast:
            now = frame_end_s
        else:
            delay = t0 + frame_end_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now = time.perf_counter() - t0
        frame = stream[i * FRAME : (i + 1) * FRAME]
        if (
            last_voiced is not None
            and run.last_voiced_sent_wall_s is None
            and frame_end_s >= last_voiced
        ):
            # the frame holding the last voiced sample is handed over now; in real time the
            # sample itself was due (frame_end_s - last_voiced) earlier, which we count as sent
            run.last_voiced_sent_wall_s = now - (frame_end_s - last_voiced)
        for kind, sample in vad.push(frame):
            if kind == "start":
                speech_start = max(0, sample - pre_roll)
                continue
            if speech_start is None:
                continue
            turn = Turn(len(run.turns), speech_start, sample, now)
            speech_start = None
            run.turns.append(turn)
            seg = stream[turn.start_sample : turn.end_sample]
            if args.fast:
                text, comp = asr(seg)
                turn.text, turn.compute_s = text, comp
                begin = max(now, sim_worker_free)
                turn.ready_wall_s = sim_worker_free = begin + comp
            else:
                def job(t=turn, s=seg):
                    t.text, t.compute_s = asr(s)
                    t.ready_wall_s = time.perf_counter() - t0
                futures.append(pool.submit(job))
        if speech_start is None and i * FRAME >= len(audio) and not futures_pending(futures):
            break  # audio over, no turn open, nothing left to wait for
    if speech_start is not None:  # never ended (should not happen with the silence tail)
        turn = Turn(len(run.turns), speech_start, len(stream), n_frames * FRAME / SR)
        run.turns.append(turn)
        turn.text, turn.compute_s = asr(stream[turn.start_sample :])
        turn.ready_wall_s = turn.end_wall_s + turn.compute_s
    if pool:
        for f in futures:
            f.result()
        pool.shutdown()
    return run


def futures_pending(futures) -> bool:
    return any(not f.done() for f in futures)


def is_cut_in(turn: Turn, clip: dict) -> bool:
    t = turn.end_sample / SR
    for p in clip.get("pauses") or []:
        if p.get("kind") == "mid_sentence" and p["start_s"] < t <= p["end_s"] + 0.1:
            return True
    return False


def select_clips(manifest: dict, spec: Optional[str]) -> list[dict]:
    clips = manifest["clips"]
    if not spec or spec == "all":
        return [c for c in clips if c.get("item_id")]
    globs = [g.strip() for g in spec.split(",") if g.strip()]
    return [c for c in clips if any(fnmatch.fnmatchcase(c["file"], g) for g in globs)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fixtures", default="audio-fixtures", help="folder with manifest.json")
    ap.add_argument("--clips", default=None, help="comma-separated globs over file names (default: all answer clips)")
    ap.add_argument("--sequence", default=None, help="comma-separated exact file names played in this order, repeats allowed (instead of --clips): one simulated applicant's answers, as nextmark-bench live assigns them")
    ap.add_argument("--start-at", type=float, default=None, help="Unix time to start the first clip at (after the model is loaded), so several peer processes run side by side")
    ap.add_argument("--out", default=None, help="also write the JSON lines to this file")
    ap.add_argument("--fast", action="store_true", help="simulated clock instead of real-time pacing")
    ap.add_argument("--end-silence-s", type=float, default=PIPECAT_STOP_SECS, help="silence that ends a turn (default 0.8, Pipecat's VADParams.stop_secs)")
    ap.add_argument("--start-speech-s", type=float, default=PIPECAT_START_SECS, help="speech that starts a turn (default 0.2, Pipecat's start_secs)")
    ap.add_argument("--vad-confidence", type=float, default=SILERO_THRESHOLD, help="speech probability threshold (default 0.5, Silero's default; Pipecat's is 0.7)")
    ap.add_argument("--vad", choices=["silero", "energy"], default="silero")
    ap.add_argument("--pre-roll-s", type=float, default=1.0, help="audio kept from before the VAD's speech start (default 1.0)")
    ap.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads (default 2)")
    ap.add_argument("--compute-type", default="int8", choices=["int8", "float32", "int8_float32", "default"], help="CTranslate2 compute type (default int8: fastest here)")
    ap.add_argument("--model", default=None, help="CTranslate2 model folder (default $NEXTMARK_HOME/peer-model)")
    args = ap.parse_args()

    home = os.environ.get("NEXTMARK_HOME") or os.path.expanduser("~/.cache/nextmark")
    model_dir = args.model or os.path.join(home, "peer-model")
    fixtures = Path(args.fixtures)
    manifest = json.loads((fixtures / "manifest.json").read_text())
    if args.sequence is not None:
        by_name = {c["file"]: c for c in manifest["clips"]}
        names = [n.strip() for n in args.sequence.split(",") if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            log(f"--sequence: {', '.join(unknown)} not in {fixtures / 'manifest.json'}")
            return 2
        clips = [by_name[n] for n in names]
    else:
        clips = select_clips(manifest, args.clips)
    if not clips:
        log(f"no clip matches {args.sequence or args.clips!r}")
        return 2

    from faster_whisper import decode_audio
    import ctranslate2
    import faster_whisper

    t = time.perf_counter()
    asr = Transcriber(model_dir, args.compute_type, args.threads)
    load_s = time.perf_counter() - t
    asr(np.zeros(SR, dtype=np.float32))  # warm-up, not measured
    vad_model = SileroStream() if args.vad == "silero" else EnergyStream()
    vad = TurnDetector(vad_model, args.vad_confidence, args.start_speech_s, args.end_silence_s)
    log(f"model {model_dir} ({args.compute_type}, {args.threads} threads) loaded in {load_s:.2f}s; "
        f"{len(clips)} clip(s), {'fast' if args.fast else 'real time'}")

    out = open(args.out, "w") if args.out else None
    if args.start_at is not None:
        wait = args.start_at - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            log(f"--start-at was {-wait:.2f}s ago (the model took longer to load); starting now")

    def emit(obj: dict) -> None:
        line = json.dumps(obj)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    latencies, cut_ins, errors, ref_words = [], 0, 0, 0
    total_audio = total_compute = 0.0
    turns_total = 0
    for k, clip in enumerate(clips, 1):
        audio = decode_audio(str(fixtures / clip["file"]), sampling_rate=SR).astype(np.float32)
        audio_s = len(audio) / SR
        log(f"clip {k}/{len(clips)} {clip['file']} ({audio_s:.1f}s)")
        run = run_clip(audio, clip, args, vad, asr)
        for t_ in run.turns:
            t_.cut_in = is_cut_in(t_, clip)
        text = " ".join(t_.text for t_ in run.turns if t_.text).strip()
        compute = sum(t_.compute_s for t_ in run.turns)
        last_voiced = clip.get("last_voiced_s")
        # the turn that holds the answer's end: the first one to end after the last voiced sample
        final = None
        if last_voiced is not None:
            final = next((t_ for t_ in run.turns if t_.end_sample / SR >= last_voiced), None)
        final_ready = max((t_.ready_wall_s for t_ in run.turns), default=None) if final is None else \
            max(t_.ready_wall_s for t_ in run.turns if t_.index <= final.index)
        latency = None
        if final is not None and run.last_voiced_sent_wall_s is not None:
            latency = final_ready - run.last_voiced_sent_wall_s
            latencies.append(latency)
        n_cut = sum(t_.cut_in for t_ in run.turns)
        cut_ins += n_cut
        ref = clip.get("reference_text")
        wer = None
        if ref is not None:
            e, n = word_errors(ref, text)
            errors, ref_words = errors + e, ref_words + n
            wer = e / n if n else float(e)
        total_audio += audio_s
        total_compute += compute
        turns_total += len(run.turns)
        emit({
            "file": clip["file"],
            "audio_s": round(audio_s, 3),
            "turn_end_wall_s": None if final is None else round(final.end_wall_s, 3),
            "final_ready_wall_s": None if final_ready is None else round(final_ready, 3),
            "last_voiced_sent_wall_s": None if run.last_voiced_sent_wall_s is None else round(run.last_voiced_sent_wall_s, 3),
            "end_of_turn_latency_s": None if latency is None else round(latency, 3),
            "cut_ins": n_cut,
            "turns": [
                {"start_s": round(t_.start_sample / SR, 3), "end_s": round(t_.end_sample / SR, 3),
                 "end_wall_s": round(t_.end_wall_s, 3), "ready_wall_s": round(t_.ready_wall_s, 3),
                 "compute_s": round(t_.compute_s, 3), "cut_in": t_.cut_in}
                for t_ in run.turns
            ],
            "text": text,
            "reference_text": ref,
            "wer": None if wer is None else round(wer, 4),
            "compute_s": round(compute, 3),
        })

    emit({
        "summary": True,
        "peer": "faster-whisper",
        "mode": "fast" if args.fast else "realtime",
        "clips": len(clips),
        "end_of_turn_latency_p50_s": None if not latencies else round(nearest_rank(latencies, 50), 3),
        "end_of_turn_latency_p95_s": None if not latencies else round(nearest_rank(latencies, 95), 3),
        "end_of_turn_latency_max_s": None if not latencies else round(max(latencies), 3),
        "cut_ins": cut_ins,
        "turns": turns_total,
        "wer": round(errors / ref_words, 4) if ref_words else None,
        "word_errors": errors,
        "reference_words": ref_words,
        "audio_s": round(total_audio, 3),
        "compute_s": round(total_compute, 3),
        "rtf": round(total_compute / total_audio, 4) if total_audio else None,
        "config": {
            "end_silence_s": args.end_silence_s, "start_speech_s": args.start_speech_s,
            "vad": args.vad, "vad_confidence": args.vad_confidence, "pre_roll_s": args.pre_roll_s,
            "compute_type": args.compute_type, "threads": args.threads, "beam_size": 1,
            "model": model_dir,
        },
        "versions": {
            "python": platform.python_version(), "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
        },
    })
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
