//! The per-stream front-end: validate raw samples, resample to 16 kHz, run the VAD.

use super::resample::StreamResampler;
use super::vad::{Vad, VadConfig, VadEvent};
use super::{AudioError, check_rate};

/// What one push produced: 16 kHz audio and the VAD events decided on it.
#[derive(Debug)]
pub struct FrontEndOutput<'a> {
    /// New 16 kHz mono samples.
    pub audio: &'a [f32],
    /// Speech boundaries decided during this push.
    pub events: &'a [VadEvent],
}

/// One stream's front-end state. Buffers are reused between pushes.
#[derive(Debug)]
pub struct AudioFrontEnd {
    input_rate: u32,
    channels: usize,
    dc_blocker: DcBlocker,
    resampler: StreamResampler,
    vad: Vad,
    mono: Vec<f32>,
    out: Vec<f32>,
    events: Vec<VadEvent>,
    frames_in: u64,
    /// Time the last push spent resampling and in the VAD (for latency metrics).
    timings: (std::time::Duration, std::time::Duration),
}

impl AudioFrontEnd {
    /// A front-end for input at `input_rate` Hz with `channels` interleaved channels.
    pub fn new(input_rate: u32, channels: usize, vad: VadConfig) -> Result<Self, AudioError> {
        check_rate(input_rate)?;
        if !(1..=2).contains(&channels) {
            return Err(AudioError::UnsupportedChannels { channels });
        }
        Ok(AudioFrontEnd {
            input_rate,
            channels,
            dc_blocker: DcBlocker::new(input_rate),
            resampler: StreamResampler::new(input_rate)?,
            vad: Vad::new(vad),
            mono: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
            frames_in: 0,
            timings: Default::default(),
        })
    }

    /// The VAD, for its state (in speech, silence so far, levels).
    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    /// Time the last push spent resampling, then in the VAD.
    pub fn last_timings(&self) -> (std::time::Duration, std::time::Duration) {
        self.timings
    }

    /// Interleaved channels of the input.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Sample rate of the input.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Seconds of input consumed.
    pub fn input_s(&self) -> f64 {
        self.frames_in as f64 / f64::from(self.input_rate)
    }

    /// Pushes interleaved float samples. Non-finite samples are refused (nothing of the
    /// push is consumed), so a broken client cannot poison the stream's state.
    pub fn push_f32(&mut self, interleaved: &[f32]) -> Result<FrontEndOutput<'_>, AudioError> {
        if let Some(i) = interleaved.iter().position(|s| !s.is_finite()) {
            return Err(AudioError::NonFinite {
                at_s: self.input_s() + (i / self.channels) as f64 / f64::from(self.input_rate),
            });
        }
        self.mono.clear();
        if self.channels == 1 {
            self.mono.extend_from_slice(interleaved);
        } else {
            self.mono.extend(
                interleaved
                    .chunks_exact(self.channels)
                    .map(|f| f.iter().sum::<f32>() / self.channels as f32),
            );
        }
        self.frames_in += self.mono.len() as u64;
        self.process()
    }

    /// Pushes little-endian signed 16-bit PCM bytes (interleaved). A trailing odd byte or
    /// partial frame is refused.
    pub fn push_pcm_s16le(&mut self, bytes: &[u8]) -> Result<FrontEndOutput<'_>, AudioError> {
        let frame_bytes = 2 * self.channels;
        if !bytes.len().is_multiple_of(frame_bytes) {
            return Err(AudioError::Corrupt {
                source_name: "pcm stream".into(),
                message: format!(
                    "{} bytes is not a whole number of {}-byte frames",
                    bytes.len(),
                    frame_bytes
                ),
            });
        }
        self.mono.clear();
        let scale = 1.0 / (32768.0 * self.channels as f32);
        for frame in bytes.chunks_exact(frame_bytes) {
            let sum: f32 = frame
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                .sum();
            self.mono.push(sum * scale);
        }
        self.frames_in += self.mono.len() as u64;
        self.process()
    }

    fn process(&mut self) -> Result<FrontEndOutput<'_>, AudioError> {
        self.out.clear();
        self.events.clear();
        let started = std::time::Instant::now();
        self.dc_blocker.apply(&mut self.mono);
        self.resampler.push(&self.mono, &mut self.out)?;
        let resampled = std::time::Instant::now();
        self.vad.push(&self.out, &mut self.events);
        self.timings = (resampled - started, resampled.elapsed());
        Ok(FrontEndOutput {
            audio: &self.out,
            events: &self.events,
        })
    }

    /// Ends the stream: flushes the resampler and closes open speech.
    pub fn finish(&mut self) -> Result<FrontEndOutput<'_>, AudioError> {
        self.out.clear();
        self.events.clear();
        self.resampler.flush(&mut self.out)?;
        self.vad.push(&self.out, &mut self.events);
        self.vad.finish(&mut self.events);
        Ok(FrontEndOutput {
            audio: &self.out,
            events: &self.events,
        })
    }

    /// Forgets all state.
    pub fn reset(&mut self) {
        self.dc_blocker = DcBlocker::new(self.input_rate);
        self.resampler.reset();
        self.vad.reset();
        self.frames_in = 0;
    }
}

/// Cut-off of the DC blocker, Hz: far below the voice (≥ 80 Hz), so speech passes unchanged.
const DC_CUTOFF_HZ: f64 = 10.0;

/// A one-pole high-pass filter, `y[n] = x[n] − x[n−1] + r·y[n−1]`: removes a microphone's DC
/// offset, which would otherwise raise every frame's level (hiding pauses from the VAD) and
/// reach the transcriber. Sample by sample, so chunking does not change its output.
#[derive(Debug, Clone, Copy)]
struct DcBlocker {
    r: f32,
    last_in: f32,
    last_out: f32,
}

impl DcBlocker {
    fn new(rate: u32) -> Self {
        let r = 1.0 - 2.0 * std::f64::consts::PI * DC_CUTOFF_HZ / f64::from(rate);
        DcBlocker {
            r: r as f32,
            last_in: 0.0,
            last_out: 0.0,
        }
    }

    fn apply(&mut self, samples: &mut [f32]) {
        for s in samples {
            let out = *s - self.last_in + self.r * self.last_out;
            self.last_in = *s;
            self.last_out = out;
            *s = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_refused_with_its_time() {
        let mut fe = AudioFrontEnd::new(8_000, 1, VadConfig::default()).unwrap();
        fe.push_f32(&[0.0; 8_000]).unwrap();
        let mut bad = vec![0.0; 100];
        bad[40] = f32::NAN;
        let err = fe.push_f32(&bad).unwrap_err();
        assert!(
            matches!(err, AudioError::NonFinite { at_s } if (at_s - 1.005).abs() < 1e-9),
            "{err}"
        );
    }

    /// Bursts of a 300 Hz tone with `offset` added throughout; the VAD's events and the mean
    /// of the output's last second.
    fn bursts_with_offset(offset: f32) -> (Vec<VadEvent>, f32) {
        let mut fe = AudioFrontEnd::new(16_000, 1, VadConfig::default()).unwrap();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for second in 0..7 {
            let tone = second % 2 == 1;
            let samples: Vec<f32> = (0..16_000)
                .map(|i| {
                    let t = i as f32 / 16_000.0;
                    let voice = if tone {
                        0.1 * (2.0 * std::f32::consts::PI * 300.0 * t).sin()
                    } else {
                        0.0005 * ((i * 7919 % 101) as f32 / 50.0 - 1.0)
                    };
                    (voice + offset).clamp(-1.0, 1.0)
                })
                .collect();
            let pushed = fe.push_f32(&samples).unwrap();
            events.extend_from_slice(pushed.events);
            out.extend_from_slice(pushed.audio);
        }
        let tail = &out[out.len() - 16_000..];
        (events, tail.iter().sum::<f32>() / tail.len() as f32)
    }

    #[test]
    fn a_dc_offset_changes_neither_the_speech_found_nor_the_audio_passed_on() {
        let (clean, _) = bursts_with_offset(0.0);
        let (offset, tail_mean) = bursts_with_offset(0.4);
        assert_eq!(clean.len(), 6, "{clean:?}");
        assert_eq!(clean.len(), offset.len(), "{clean:?} vs {offset:?}");
        for (a, b) in clean.iter().zip(&offset) {
            let ((VadEvent::SpeechStart { at_s: x }, VadEvent::SpeechStart { at_s: y })
            | (VadEvent::SpeechEnd { at_s: x }, VadEvent::SpeechEnd { at_s: y })) = (a, b)
            else {
                panic!("{a:?} vs {b:?}");
            };
            assert!((x - y).abs() <= 0.05, "{a:?} vs {b:?}");
        }
        assert!(tail_mean.abs() < 0.005, "DC left: {tail_mean}");
    }

    #[test]
    fn pcm_stereo_is_downmixed_and_resampled() {
        let mut fe = AudioFrontEnd::new(48_000, 2, VadConfig::default()).unwrap();
        let bytes: Vec<u8> = (0..48_000 * 2)
            .flat_map(|_| 1000i16.to_le_bytes())
            .collect();
        let n = fe.push_pcm_s16le(&bytes).unwrap().audio.len();
        let m = fe.finish().unwrap().audio.len();
        assert_eq!(n + m, 16_000);
        assert!(fe.push_pcm_s16le(&[1, 2, 3]).is_err());
    }
}
