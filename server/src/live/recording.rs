//! Recording of an interview's audio (applicant and interviewer) as Ogg Opus files.
//!
//! Both tracks run on the session clock: sample *n* of either file is heard at `n / rate`
//! seconds into the interview. The applicant track is the clock (every received sample is
//! written, silence included); the interviewer track is silent between questions, padded up
//! to the moment each question is spoken.
//!
//! Files follow RFC 7845: an `OpusHead` page (pre-skip from the encoder's lookahead, the input
//! rate), an `OpusTags` page, then 20 ms Opus packets with granule positions in 48 kHz units,
//! the last page flagged end-of-stream and its granule trimmed to the exact duration. A file
//! is written as `<path>.part`, its pages flushed about once a second (a crash loses at most
//! about a second), and renamed to `<path>` only by `finish`.
//!
//! The writers do blocking file I/O: drive them from a blocking task, not the async runtime.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use serde::Serialize;

/// Input sample rates the Opus encoder accepts.
pub const OPUS_INPUT_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// Rate of the applicant track: the 16 kHz analysis audio, written as is.
pub const APPLICANT_RATE: u32 = 16_000;
/// File name of the applicant track inside a session's recording directory.
pub const APPLICANT_FILE: &str = "applicant.opus";
/// File name of the interviewer track inside a session's recording directory.
pub const INTERVIEWER_FILE: &str = "interviewer.opus";

/// Opus always decodes at 48 kHz; granule positions and pre-skip count at this rate.
const GRANULE_RATE: u64 = 48_000;
/// Frames per second (20 ms frames: the usual speech frame size).
const FRAMES_PER_S: u32 = 50;
/// 48 kHz samples per 20 ms frame.
const GRANULE_PER_FRAME: u64 = GRANULE_RATE / FRAMES_PER_S as u64;
/// Frames between forced page ends and buffer flushes: about one second.
const FLUSH_EVERY_FRAMES: u32 = FRAMES_PER_S;
/// Largest packet libopus can produce for one frame, with headroom.
const MAX_PACKET: usize = 4_000;
/// Longest track accepted: silence padding past this is a clock bug, not an interview.
const MAX_DURATION_S: f64 = 6.0 * 3600.0;
/// A block of silence to pad with, without allocating.
const SILENCE: [f32; 960] = [0.0; 960];

/// What a finished recording file holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingInfo {
    /// The final file (no longer `.part`).
    pub path: PathBuf,
    /// Duration of the audio written, in seconds on the session clock.
    pub duration_s: f64,
    /// File size in bytes.
    pub bytes: u64,
}

/// The Opus-legal rate a track should use for audio at `rate`: the rate itself when Opus takes
/// it, otherwise the next one up (22.05 kHz → 24 kHz, 44.1 kHz → 48 kHz), so resampling never
/// loses bandwidth.
pub fn opus_rate_for(rate: u32) -> u32 {
    OPUS_INPUT_RATES
        .into_iter()
        .find(|&r| r >= rate)
        .unwrap_or(48_000)
}

/// Writes mono audio at one Opus-legal rate to an Ogg Opus file.
pub struct OggOpusWriter {
    /// Where the file ends up after [`OggOpusWriter::finish`].
    path: PathBuf,
    /// Where it is written until then, so a half-written file is never taken for a whole one.
    part_path: PathBuf,
    /// The Ogg page writer over the `.part` file.
    pages: PacketWriter<'static, BufWriter<File>>,
    /// Ogg logical stream serial number (random, as the spec asks).
    serial: u32,
    /// The Opus encoder (VOIP application, mono).
    encoder: opus::Encoder,
    /// Input rate of the pushed audio.
    sample_rate: u32,
    /// Input samples per 20 ms frame.
    frame_len: usize,
    /// Samples waiting for a full frame; allocated once.
    frame: Vec<f32>,
    /// Encoder output for one packet; allocated once.
    packet: Vec<u8>,
    /// Encoder lookahead in input samples: how much zero padding `finish` owes.
    lookahead: u64,
    /// The lookahead in 48 kHz samples, written to `OpusHead` and added to granules.
    pre_skip: u16,
    /// Samples pushed so far (silence included): the track's position.
    samples_in: u64,
    /// Frames encoded so far.
    frames_written: u64,
    /// Frames since the last page flush.
    frames_since_flush: u32,
}

impl fmt::Debug for OggOpusWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("position_s", &self.position_s())
            .finish_non_exhaustive()
    }
}

impl OggOpusWriter {
    /// Starts `path` (written as `<path>.part` until [`finish`](Self::finish)) for mono audio
    /// at `sample_rate`, which must be one of [`OPUS_INPUT_RATES`].
    pub fn create(path: impl AsRef<Path>, sample_rate: u32) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !OPUS_INPUT_RATES.contains(&sample_rate) {
            bail!(
                "recording {}: {sample_rate} Hz is not an Opus input rate (8, 12, 16, 24 or 48 kHz)",
                path.display()
            );
        }
        let part_path = part_path(&path);
        let mut encoder =
            opus::Encoder::new(sample_rate, opus::Channels::Mono, opus::Application::Voip)
                .context("creating the Opus encoder")?;
        let bitrate = if sample_rate <= 16_000 {
            24_000
        } else {
            32_000
        };
        encoder
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .context("setting the Opus bitrate")?;
        encoder
            .set_signal(opus::Signal::Voice)
            .context("setting the Opus signal type")?;
        let lookahead = encoder
            .get_lookahead()
            .context("reading the Opus encoder lookahead")?;
        let lookahead = u64::try_from(lookahead).unwrap_or(0);
        let pre_skip = u16::try_from(lookahead * GRANULE_RATE / u64::from(sample_rate))
            .context("Opus lookahead too large for OpusHead")?;

        let file = File::create(&part_path)
            .with_context(|| format!("creating recording file {}", part_path.display()))?;
        let frame_len = (sample_rate / FRAMES_PER_S) as usize;
        let mut writer = OggOpusWriter {
            path,
            part_path,
            pages: PacketWriter::new(BufWriter::new(file)),
            serial: rand::random(),
            encoder,
            sample_rate,
            frame_len,
            frame: Vec::with_capacity(frame_len),
            packet: vec![0; MAX_PACKET],
            lookahead,
            pre_skip,
            samples_in: 0,
            frames_written: 0,
            frames_since_flush: 0,
        };
        writer.write_headers()?;
        Ok(writer)
    }

    fn write_headers(&mut self) -> Result<()> {
        // OpusHead (RFC 7845 §5.1): version 1, mono, pre-skip, input rate, 0 dB gain, family 0.
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1);
        head.push(1);
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&self.sample_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        // OpusTags (§5.2): vendor string, then one comment naming the writer.
        let vendor = opus::version().as_bytes();
        let comment = b"ENCODER=nextmark";
        let mut tags = Vec::with_capacity(8 + 4 + vendor.len() + 4 + 4 + comment.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&len_u32(vendor.len()).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&1u32.to_le_bytes());
        tags.extend_from_slice(&len_u32(comment.len()).to_le_bytes());
        tags.extend_from_slice(comment);
        // Each header packet ends its own page, with granule position 0.
        for packet in [head, tags] {
            self.pages
                .write_packet(packet, self.serial, PacketWriteEndInfo::EndPage, 0)
                .with_context(|| format!("writing {}", self.part_path.display()))?;
        }
        self.flush()
    }

    /// Appends mono samples at the writer's rate. Non-finite samples are written as silence
    /// and the rest clamped to [-1, 1].
    pub fn push(&mut self, samples: &[f32]) -> Result<()> {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.frame_len - self.frame.len()).min(rest.len());
            self.frame.extend(rest[..take].iter().map(|&s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            }));
            rest = &rest[take..];
            self.samples_in += take as u64;
            if self.frame.len() == self.frame_len {
                self.encode_frame(FrameKind::Audio)?;
            }
        }
        Ok(())
    }

    /// Appends silence until the track reaches `t_s` seconds; does nothing if it is already
    /// there or past it.
    pub fn push_silence_until(&mut self, t_s: f64) -> Result<()> {
        if t_s > MAX_DURATION_S {
            bail!(
                "recording {}: cannot pad to {t_s:.1} s (limit {MAX_DURATION_S:.0} s)",
                self.path.display()
            );
        }
        // `as` saturates: NaN and negative times become 0 (nothing to pad).
        let target = (t_s * f64::from(self.sample_rate)).round() as u64;
        while self.samples_in < target {
            let n = usize::try_from(target - self.samples_in)
                .unwrap_or(usize::MAX)
                .min(SILENCE.len());
            self.push(&SILENCE[..n])?;
        }
        Ok(())
    }

    /// The track's length so far, in seconds.
    pub fn position_s(&self) -> f64 {
        self.samples_in as f64 / f64::from(self.sample_rate)
    }

    /// The input rate this writer encodes.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Encodes the full frame in `self.frame` and writes it as one packet.
    fn encode_frame(&mut self, kind: FrameKind) -> Result<()> {
        let n = self
            .encoder
            .encode_float(&self.frame, &mut self.packet)
            .with_context(|| format!("encoding Opus for {}", self.path.display()))?;
        self.frame.clear();
        self.frames_written += 1;
        self.frames_since_flush += 1;
        let granule = self.frames_written * GRANULE_PER_FRAME;
        let (info, granule) = match kind {
            FrameKind::Audio if self.frames_since_flush >= FLUSH_EVERY_FRAMES => {
                (PacketWriteEndInfo::EndPage, granule)
            }
            FrameKind::Audio => (PacketWriteEndInfo::NormalPacket, granule),
            // Padding may not claim more audio than the stream's end.
            FrameKind::Padding { end } => (PacketWriteEndInfo::NormalPacket, granule.min(end)),
            FrameKind::Last { end } => (PacketWriteEndInfo::EndStream, granule.min(end)),
        };
        self.pages
            .write_packet(self.packet[..n].to_vec(), self.serial, info, granule)
            .with_context(|| format!("writing {}", self.part_path.display()))?;
        if info != PacketWriteEndInfo::NormalPacket {
            self.frames_since_flush = 0;
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.pages
            .inner_mut()
            .flush()
            .with_context(|| format!("writing {}", self.part_path.display()))
    }

    /// Encodes what is left (padding the encoder's lookahead so the last samples are heard),
    /// ends the stream, syncs the file and renames `<path>.part` to `<path>`.
    pub fn finish(mut self) -> Result<RecordingInfo> {
        let duration_s = self.position_s();
        // The last granule says exactly how much audio there is (RFC 7845 §4.4): decoders
        // trim the zero padding below.
        let final_granule = u64::from(self.pre_skip)
            + (self.samples_in * GRANULE_RATE).div_ceil(u64::from(self.sample_rate));
        let needed = self.samples_in + self.lookahead;
        let frame_len = self.frame_len as u64;
        let encoded = self.frames_written * frame_len;
        // At least one packet, so the end-of-stream flag has a page to sit on.
        let frames_left = needed.saturating_sub(encoded).div_ceil(frame_len).max(1);
        for i in 0..frames_left {
            self.frame.resize(self.frame_len, 0.0);
            let kind = if i + 1 == frames_left {
                FrameKind::Last { end: final_granule }
            } else {
                FrameKind::Padding { end: final_granule }
            };
            self.encode_frame(kind)?;
        }
        let OggOpusWriter {
            path,
            part_path,
            pages,
            ..
        } = self;
        let file = pages
            .into_inner()
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {}", part_path.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", part_path.display()))?;
        drop(file);
        std::fs::rename(&part_path, &path)
            .with_context(|| format!("renaming {} to {}", part_path.display(), path.display()))?;
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        Ok(RecordingInfo {
            path,
            duration_s,
            bytes,
        })
    }
}

/// What a packet is, which decides its page handling and granule position.
#[derive(Debug, Clone, Copy)]
enum FrameKind {
    /// Pushed audio: a page ends about every second.
    Audio,
    /// Zero padding flushing the encoder's lookahead, before the last packet.
    Padding {
        /// The stream's final granule position, which no packet may exceed.
        end: u64,
    },
    /// The last packet: ends the stream.
    Last {
        /// The stream's final granule position.
        end: u64,
    },
}

/// `<path>.part`.
fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The two tracks of one interview, in one directory: `applicant.opus` (the session clock) and
/// `interviewer.opus` (silent between questions).
pub struct SessionRecorder {
    /// The applicant's microphone audio at 16 kHz; its position is the session audio clock.
    applicant: OggOpusWriter,
    /// The interviewer's spoken questions, each placed at the time it was sent.
    interviewer: OggOpusWriter,
    /// A resampler for interviewer audio at another rate, kept for the next question (the
    /// speech engine's rate does not change within a session).
    resampler: Option<(u32, Fft<f32>)>,
}

impl fmt::Debug for SessionRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecorder")
            .field("applicant", &self.applicant)
            .field("interviewer", &self.interviewer)
            .finish_non_exhaustive()
    }
}

impl SessionRecorder {
    /// Creates `dir` if needed and starts both tracks there. `interviewer_rate` is the speech
    /// engine's output rate; the interviewer track uses [`opus_rate_for`] of it, so audio at
    /// that rate is written without resampling.
    pub fn create(dir: impl AsRef<Path>, interviewer_rate: u32) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating recording directory {}", dir.display()))?;
        let applicant = OggOpusWriter::create(dir.join(APPLICANT_FILE), APPLICANT_RATE)?;
        let interviewer =
            OggOpusWriter::create(dir.join(INTERVIEWER_FILE), opus_rate_for(interviewer_rate))?;
        Ok(SessionRecorder {
            applicant,
            interviewer,
            resampler: None,
        })
    }

    /// Appends the applicant's 16 kHz audio, silence included: this advances the session clock.
    pub fn push_applicant(&mut self, samples: &[f32]) -> Result<()> {
        self.applicant.push(samples)
    }

    /// The session clock: seconds of applicant audio recorded.
    pub fn position_s(&self) -> f64 {
        self.applicant.position_s()
    }

    /// Places one interviewer utterance (`samples` at `rate`) at `at_s` on the session clock.
    /// The gap since the previous utterance is filled with silence; an utterance that starts
    /// before the previous one ended follows it directly. Audio at a rate other than the
    /// track's is resampled, one whole utterance per call.
    pub fn push_interviewer(&mut self, at_s: f64, samples: &[f32], rate: u32) -> Result<()> {
        self.interviewer.push_silence_until(at_s)?;
        let track_rate = self.interviewer.sample_rate();
        if rate == track_rate || samples.is_empty() {
            return self.interviewer.push(samples);
        }
        let resampled = self.resample(samples, rate, track_rate)?;
        self.interviewer.push(&resampled)
    }

    fn resample(&mut self, samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
        nextmark_engine::audio::check_rate(from)
            .with_context(|| format!("interviewer audio at {from} Hz"))?;
        let resampler = match &mut self.resampler {
            Some((rate, r)) if *rate == from => r,
            slot => {
                // About 40 ms blocks, as in the engine's front-end resampler.
                let chunk = (from as usize / 25).max(256);
                let r = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
                    .map_err(|e| anyhow!("resampler {from} Hz → {to} Hz: {e}"))?;
                &mut slot.insert((from, r)).1
            }
        };
        let input = InterleavedSlice::new(samples, 1, samples.len())
            .map_err(|e| anyhow!("resampling interviewer audio: {e}"))?;
        // `process_all` resets the resampler and trims its delay: whole clip in, whole clip out.
        let output = resampler
            .process_all(&input, samples.len(), None)
            .map_err(|e| anyhow!("resampling interviewer audio {from} Hz → {to} Hz: {e}"))?;
        Ok(output.take_data())
    }

    /// Pads the interviewer track to the session's length, finishes both files and returns
    /// them (applicant first). Both are attempted even if one fails.
    pub fn finish(mut self) -> Result<Vec<RecordingInfo>> {
        let end = self.applicant.position_s();
        let padded = self.interviewer.push_silence_until(end);
        let applicant = self.applicant.finish();
        let interviewer = self.interviewer.finish();
        padded?;
        Ok(vec![applicant?, interviewer?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextmark_engine::audio::{DecodeLimits, DecodedAudio, decode_file};

    fn tone(rate: u32, freq: f32, amp: f32, seconds: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds).round() as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn decode(path: &Path) -> DecodedAudio {
        decode_file(path, DecodeLimits::default()).expect("decode")
    }

    fn rms_db(samples: &[f32]) -> f32 {
        let mean = samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32;
        10.0 * mean.max(1e-12).log10()
    }

    /// Frequency from rising zero crossings over the steady middle half.
    fn frequency(samples: &[f32], rate: u32) -> f32 {
        let mid = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let crossings = mid.windows(2).filter(|w| w[0] <= 0.0 && w[1] > 0.0).count();
        crossings as f32 * rate as f32 / mid.len() as f32
    }

    /// Start (seconds) of the first 5 ms window louder than -30 dBFS.
    fn onset_s(audio: &DecodedAudio) -> f64 {
        let win = audio.sample_rate as usize / 200;
        let i = audio
            .samples
            .chunks(win)
            .position(|w| rms_db(w) > -30.0)
            .expect("no onset");
        (i * win) as f64 / f64::from(audio.sample_rate)
    }

    fn packets(path: &Path) -> Vec<ogg::Packet> {
        let file = File::open(path).expect("open");
        let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
        let mut out = Vec::new();
        while let Some(p) = reader.read_packet().expect("ogg") {
            out.push(p);
        }
        out
    }

    #[test]
    fn tone_round_trips_with_duration_frequency_and_level() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tone.opus");
        let input = tone(16_000, 440.0, 0.5, 3.0);
        let mut w = OggOpusWriter::create(&path, 16_000).expect("create");
        // Odd chunk sizes: framing must not depend on how audio arrives.
        for chunk in input.chunks(333) {
            w.push(chunk).expect("push");
        }
        assert!((w.position_s() - 3.0).abs() < 1e-9);
        let info = w.finish().expect("finish");
        assert_eq!(info.path, path);
        assert!((info.duration_s - 3.0).abs() < 1e-9);
        assert_eq!(info.bytes, std::fs::metadata(&path).expect("meta").len());
        // ~24 kbps: 3 s is about 9 kB plus headers; far below raw PCM.
        assert!(
            info.bytes > 3_000 && info.bytes < 20_000,
            "{} bytes",
            info.bytes
        );

        let audio = decode(&path);
        assert_eq!(audio.sample_rate, 48_000);
        assert_eq!(audio.channels, 1);
        assert!(
            (audio.duration_s() - 3.0).abs() <= 0.03,
            "duration {}",
            audio.duration_s()
        );
        let f = frequency(&audio.samples, audio.sample_rate);
        assert!((f - 440.0).abs() < 5.0, "frequency {f}");
        let mid = &audio.samples[audio.samples.len() / 4..audio.samples.len() * 3 / 4];
        let level = rms_db(mid);
        let expected = rms_db(&input);
        assert!(
            (level - expected).abs() <= 2.0,
            "{level} dB vs {expected} dB"
        );
    }

    #[test]
    fn headers_and_granules_follow_rfc7845() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.opus");
        let mut w = OggOpusWriter::create(&path, 16_000).expect("create");
        let pre_skip = w.pre_skip;
        assert!(pre_skip > 0);
        w.push(&tone(16_000, 300.0, 0.3, 2.51)).expect("push");
        w.finish().expect("finish");

        let ps = packets(&path);
        let head = &ps[0].data;
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1, "version");
        assert_eq!(head[9], 1, "channels");
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), pre_skip);
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            16_000
        );
        assert_eq!(ps[0].absgp_page(), 0);
        assert!(ps[1].data.starts_with(b"OpusTags"));
        let audio = &ps[2..];
        // Granules never decrease, and the last one is pre-skip + the exact duration.
        assert!(
            audio
                .windows(2)
                .all(|w| w[0].absgp_page() <= w[1].absgp_page())
        );
        let last = audio.last().expect("audio packets");
        assert!(last.last_in_stream());
        assert_eq!(last.absgp_page(), u64::from(pre_skip) + 2_510 * 48);
        // Enough packets to carry all the input past the encoder's lookahead.
        assert!(audio.len() as u64 * GRANULE_PER_FRAME >= last.absgp_page());
    }

    #[test]
    fn silence_padding_aligns_tone_onset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pad.opus");
        let mut w = OggOpusWriter::create(&path, 16_000).expect("create");
        w.push_silence_until(2.0).expect("pad");
        assert!((w.position_s() - 2.0).abs() < 1e-9);
        // Padding backwards is a no-op.
        w.push_silence_until(1.0).expect("pad");
        assert!((w.position_s() - 2.0).abs() < 1e-9);
        w.push(&tone(16_000, 440.0, 0.5, 1.0)).expect("push");
        w.finish().expect("finish");
        let audio = decode(&path);
        let onset = onset_s(&audio);
        assert!((onset - 2.0).abs() <= 0.03, "onset at {onset} s");
        assert!((audio.duration_s() - 3.0).abs() <= 0.03);
    }

    #[test]
    fn session_recorder_places_22k05_question_on_the_session_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = SessionRecorder::create(dir.path(), 22_050).expect("create");
        assert_eq!(rec.interviewer.sample_rate(), 24_000);
        // The applicant talks from 0.5 s; the question is spoken at 2.0 s.
        rec.push_applicant(&vec![0.0; 8_000]).expect("applicant");
        rec.push_applicant(&tone(16_000, 200.0, 0.3, 1.0))
            .expect("applicant");
        rec.push_interviewer(2.0, &tone(22_050, 440.0, 0.5, 0.8), 22_050)
            .expect("interviewer");
        rec.push_applicant(&vec![0.0; 32_000]).expect("applicant");
        assert!((rec.position_s() - 3.5).abs() < 1e-9);
        let infos = rec.finish().expect("finish");
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].path, dir.path().join(APPLICANT_FILE));
        assert_eq!(infos[1].path, dir.path().join(INTERVIEWER_FILE));

        let applicant = decode(&infos[0].path);
        let onset = onset_s(&applicant);
        assert!((onset - 0.5).abs() <= 0.03, "applicant onset {onset}");
        let interviewer = decode(&infos[1].path);
        let onset = onset_s(&interviewer);
        assert!((onset - 2.0).abs() <= 0.03, "interviewer onset {onset}");
        // The interviewer track is padded to the session's length.
        assert!((infos[1].duration_s - 3.5).abs() < 0.01);
        assert!((interviewer.duration_s() - 3.5).abs() <= 0.03);
        let start = (2.2 * 48_000.0) as usize;
        let speech = &interviewer.samples[start..start + 24_000];
        let f = frequency(speech, 48_000);
        assert!((f - 440.0).abs() < 10.0, "frequency {f}");
        let expected = rms_db(&tone(48_000, 440.0, 0.5, 0.5));
        assert!((rms_db(speech) - expected).abs() <= 2.0);
    }

    #[test]
    fn opus_legal_interviewer_rate_is_written_as_is() {
        assert_eq!(opus_rate_for(16_000), 16_000);
        assert_eq!(opus_rate_for(22_050), 24_000);
        assert_eq!(opus_rate_for(44_100), 48_000);
        assert_eq!(opus_rate_for(96_000), 48_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = SessionRecorder::create(dir.path(), 24_000).expect("create");
        rec.push_interviewer(0.0, &tone(24_000, 440.0, 0.5, 0.5), 24_000)
            .expect("push");
        assert!(rec.resampler.is_none());
        // A 16 kHz clip on a 24 kHz track is resampled and keeps its duration.
        rec.push_interviewer(1.0, &tone(16_000, 440.0, 0.5, 0.5), 16_000)
            .expect("push");
        assert!((rec.interviewer.position_s() - 1.5).abs() < 0.002);
        rec.finish().expect("finish");
    }

    #[test]
    fn writer_rejects_a_rate_opus_cannot_take() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = OggOpusWriter::create(dir.path().join("x.opus"), 22_050).expect_err("22.05k");
        assert!(err.to_string().contains("22050 Hz"), "{err}");
    }

    #[test]
    fn finish_after_zero_samples_makes_a_valid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.opus");
        let w = OggOpusWriter::create(&path, 16_000).expect("create");
        let pre_skip = w.pre_skip;
        let info = w.finish().expect("finish");
        assert_eq!(info.duration_s, 0.0);
        let ps = packets(&path);
        assert!(ps[0].data.starts_with(b"OpusHead"));
        assert!(ps[1].data.starts_with(b"OpusTags"));
        let last = ps.last().expect("packets");
        assert!(ps.len() >= 3 && last.last_in_stream());
        assert_eq!(last.absgp_page(), u64::from(pre_skip));
        // Decoders that ignore end trimming get at most one frame of silence.
        let audio = decode(&path);
        assert!(audio.duration_s() <= 0.02);
        assert!(audio.samples.iter().all(|s| s.abs() < 1e-3));
    }

    #[test]
    fn unwritable_path_errors_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("applicant.opus");
        let err = OggOpusWriter::create(&path, 16_000).expect_err("unwritable");
        let message = format!("{err:#}");
        assert!(message.contains(&path.display().to_string()), "{message}");

        // A file where the session directory should be.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"x").expect("write");
        let err = SessionRecorder::create(&blocker, 16_000).expect_err("not a directory");
        assert!(format!("{err:#}").contains(&blocker.display().to_string()));
    }

    #[test]
    fn part_file_is_renamed_only_on_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("live.opus");
        let part = dir.path().join("live.opus.part");
        let mut w = OggOpusWriter::create(&path, 16_000).expect("create");
        w.push(&tone(16_000, 440.0, 0.5, 1.5)).expect("push");
        assert!(!path.exists());
        // Pages are flushed about every second, so most of the audio is already on disk.
        let on_disk = std::fs::metadata(&part).expect("part exists").len();
        assert!(on_disk > 2_000, "{on_disk} bytes on disk");
        let info = w.finish().expect("finish");
        assert!(!part.exists());
        assert!(path.exists());
        assert_eq!(info.bytes, std::fs::metadata(&path).expect("meta").len());
    }

    #[test]
    fn dropping_without_finish_keeps_all_but_the_last_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crash.opus");
        let mut w = OggOpusWriter::create(&path, 16_000).expect("create");
        w.push(&tone(16_000, 440.0, 0.5, 3.3)).expect("push");
        drop(w);
        assert!(!path.exists());
        let audio = decode(&part_path(&path));
        assert!(
            audio.duration_s() >= 2.3,
            "{} s survived",
            audio.duration_s()
        );
    }
}
