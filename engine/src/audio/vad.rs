//! Voice activity detection on 16 kHz audio: frame energy against an adaptive noise floor,
//! with hysteresis so that speech starts only after a run of loud frames and ends only after a
//! hangover of quiet ones.

use std::collections::VecDeque;

use super::{TARGET_RATE, rms_dbfs};

/// Frame length: 10 ms at 16 kHz.
pub const FRAME: usize = (TARGET_RATE / 100) as usize;

/// Tunable thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// A frame is loud when it is this many dB above the noise floor...
    pub start_above_floor_db: f32,
    /// ...and stays voiced (inside speech) while it is this many dB above it.
    pub stay_above_floor_db: f32,
    /// Frames quieter than this are never speech, whatever the floor.
    pub min_level_dbfs: f32,
    /// Loud time needed to declare speech started.
    pub start_ms: u32,
    /// Quiet time needed to declare speech ended.
    pub hangover_ms: u32,
    /// Window over which the noise floor is estimated.
    pub floor_window_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            start_above_floor_db: 12.0,
            stay_above_floor_db: 7.0,
            min_level_dbfs: -52.0,
            start_ms: 60,
            hangover_ms: 200,
            floor_window_ms: 4000,
        }
    }
}

/// Speech boundaries, on the stream's clock (seconds since the first sample pushed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VadEvent {
    /// Speech began at this time.
    SpeechStart {
        /// Seconds.
        at_s: f64,
    },
    /// Speech ended at this time (the last voiced frame's end).
    SpeechEnd {
        /// Seconds.
        at_s: f64,
    },
}

/// Streaming VAD. Push any number of samples; events come out as they are decided.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    partial: Vec<f32>,
    frames: u64,
    recent_levels: VecDeque<f32>,
    sorted_scratch: Vec<f32>,
    floor_db: f32,
    in_speech: bool,
    loud_run: u32,
    quiet_run: u32,
    last_voiced_frame: u64,
    levels: Vec<f32>,
}

impl Vad {
    /// A detector with the given thresholds.
    pub fn new(config: VadConfig) -> Self {
        Vad {
            config,
            partial: Vec::with_capacity(FRAME),
            frames: 0,
            recent_levels: VecDeque::new(),
            sorted_scratch: Vec::new(),
            floor_db: -90.0,
            in_speech: false,
            loud_run: 0,
            quiet_run: 0,
            last_voiced_frame: 0,
            levels: Vec::new(),
        }
    }

    /// Whether the detector is currently inside speech.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Whether loud frames have begun that are not yet long enough to count as speech: a
    /// voice start may be on its way (at most [`VadConfig::start_ms`] away). A turn decision
    /// on silence should wait for it rather than talk over a speaker who just went on.
    pub fn onset_pending(&self) -> bool {
        !self.in_speech && self.loud_run > 0
    }

    /// Current noise floor estimate in dBFS.
    pub fn noise_floor_db(&self) -> f32 {
        self.floor_db
    }

    /// Seconds of audio consumed so far (whole frames).
    pub fn now_s(&self) -> f64 {
        self.frames as f64 * FRAME as f64 / f64::from(TARGET_RATE)
    }

    /// Per-frame levels in dBFS seen so far (for quality analysis).
    pub fn frame_levels(&self) -> &[f32] {
        &self.levels
    }

    /// Time since the last voiced frame ended, in seconds.
    pub fn silence_s(&self) -> f64 {
        if self.in_speech && self.quiet_run == 0 {
            return 0.0;
        }
        (self.frames.saturating_sub(self.last_voiced_frame)) as f64 * FRAME as f64
            / f64::from(TARGET_RATE)
    }

    /// Pushes 16 kHz samples; appends decided events to `events`.
    pub fn push(&mut self, samples: &[f32], events: &mut Vec<VadEvent>) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == FRAME {
                let level = rms_dbfs(&self.partial);
                self.partial.clear();
                self.frame(level, events);
            }
        }
    }

    fn frame(&mut self, level: f32, events: &mut Vec<VadEvent>) {
        let c = self.config;
        self.levels.push(level);
        self.update_floor(level);
        let frame_s = FRAME as f64 / f64::from(TARGET_RATE);
        let loud = level > c.min_level_dbfs && level > self.floor_db + c.start_above_floor_db;
        let voiced = level > c.min_level_dbfs && level > self.floor_db + c.stay_above_floor_db;
        self.frames += 1;
        if self.in_speech {
            if voiced {
                self.quiet_run = 0;
                self.last_voiced_frame = self.frames;
            } else {
                self.quiet_run += 1;
                if self.quiet_run * 10 >= c.hangover_ms {
                    self.in_speech = false;
                    self.loud_run = 0;
                    events.push(VadEvent::SpeechEnd {
                        at_s: self.last_voiced_frame as f64 * frame_s,
                    });
                }
            }
        } else if loud {
            self.loud_run += 1;
            if self.loud_run * 10 >= c.start_ms {
                self.in_speech = true;
                self.quiet_run = 0;
                self.last_voiced_frame = self.frames;
                let start = self.frames - u64::from(self.loud_run);
                events.push(VadEvent::SpeechStart {
                    at_s: start as f64 * frame_s,
                });
            }
        } else {
            self.loud_run = 0;
        }
    }

    /// Noise floor: a low percentile of recent frame levels, so that steady noise is
    /// learnt within a fraction of a second while pauses between words keep it low in speech.
    fn update_floor(&mut self, level: f32) {
        let window = (self.config.floor_window_ms / 10).max(10) as usize;
        self.recent_levels.push_back(level);
        if self.recent_levels.len() > window {
            self.recent_levels.pop_front();
        }
        if self.frames.is_multiple_of(10) || self.recent_levels.len() < 20 {
            self.sorted_scratch.clear();
            self.sorted_scratch
                .extend(self.recent_levels.iter().copied());
            self.sorted_scratch.sort_by(f32::total_cmp);
            let idx = self.sorted_scratch.len() / 10;
            self.floor_db = self.sorted_scratch[idx];
        }
    }

    /// Ends the stream: closes an open speech segment.
    pub fn finish(&mut self, events: &mut Vec<VadEvent>) {
        if self.in_speech {
            self.in_speech = false;
            events.push(VadEvent::SpeechEnd {
                at_s: self.last_voiced_frame as f64 * FRAME as f64 / f64::from(TARGET_RATE),
            });
        }
    }

    /// Forgets everything, ready for a new stream.
    pub fn reset(&mut self) {
        *self = Vad::new(self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(seconds: f32, amp: f32) -> Vec<f32> {
        let n = (16_000.0 * seconds) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / 16_000.0).sin())
            .collect()
    }

    fn noise(seconds: f32, amp: f32, seed: u32) -> Vec<f32> {
        let mut x = seed.max(1);
        (0..(16_000.0 * seconds) as usize)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                amp * ((x as f32 / u32::MAX as f32) * 2.0 - 1.0)
            })
            .collect()
    }

    #[test]
    fn an_onset_is_pending_until_it_is_long_enough_to_be_speech() {
        let mut vad = Vad::new(VadConfig::default());
        let mut events = Vec::new();
        let quiet = vec![0.0005f32; 1600];
        vad.push(&quiet, &mut events);
        assert!(!vad.onset_pending());
        // 20 ms of loud tone: below the 60 ms needed to start speech.
        let loud: Vec<f32> = (0..320).map(|i| 0.3 * (i as f32 * 0.2).sin()).collect();
        vad.push(&loud, &mut events);
        assert!(events.is_empty());
        assert!(vad.onset_pending());
        // Quiet again: the blip was not speech and nothing is pending.
        vad.push(&quiet, &mut events);
        assert!(!vad.onset_pending());
        // Long enough: speech starts and nothing is pending any more.
        let longer: Vec<f32> = (0..1600).map(|i| 0.3 * (i as f32 * 0.2).sin()).collect();
        vad.push(&longer, &mut events);
        assert!(
            matches!(events.as_slice(), [VadEvent::SpeechStart { .. }]),
            "{events:?}"
        );
        assert!(!vad.onset_pending());
    }

    #[test]
    fn detects_a_burst_with_timestamps() {
        let mut audio = noise(1.0, 0.001, 1);
        audio.extend(tone(1.5, 0.3));
        audio.extend(noise(1.0, 0.001, 2));
        let mut vad = Vad::new(VadConfig::default());
        let mut events = Vec::new();
        vad.push(&audio, &mut events);
        vad.finish(&mut events);
        assert_eq!(events.len(), 2, "{events:?}");
        match (events[0], events[1]) {
            (VadEvent::SpeechStart { at_s: s }, VadEvent::SpeechEnd { at_s: e }) => {
                assert!((s - 1.0).abs() < 0.03, "start {s}");
                assert!((e - 2.5).abs() < 0.03, "end {e}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn steady_noise_and_silence_are_not_speech() {
        for audio in [
            noise(5.0, 0.05, 3),
            vec![0.0; 80_000],
            noise(5.0, 0.000_01, 4),
        ] {
            let mut vad = Vad::new(VadConfig::default());
            let mut events = Vec::new();
            vad.push(&audio, &mut events);
            vad.finish(&mut events);
            assert!(events.is_empty(), "{events:?}");
        }
    }

    #[test]
    fn short_click_does_not_start_speech() {
        let mut audio = vec![0.0; 16_000];
        audio.extend(tone(0.03, 0.5));
        audio.extend(vec![0.0; 16_000]);
        let mut vad = Vad::new(VadConfig::default());
        let mut events = Vec::new();
        vad.push(&audio, &mut events);
        assert!(events.is_empty(), "{events:?}");
    }
}
