//! Cuts a stream into utterances at pauses, so that each can be transcribed as soon as it ends.

use crate::audio::{TARGET_RATE, VadEvent};

/// Segmentation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// A pause at least this long ends an utterance.
    pub min_pause_s: f64,
    /// Audio kept before speech start (word onsets are soft).
    pub pre_roll_s: f64,
    /// Audio kept after speech end (word endings are soft).
    pub post_roll_s: f64,
    /// An utterance is force-cut at this length (whisper's window is 30 s).
    pub max_utterance_s: f64,
    /// Once an utterance is this long, a shorter pause ends it, so that no final is long to
    /// decode.
    pub long_utterance_s: f64,
    /// The pause that ends an utterance longer than `long_utterance_s`.
    pub long_min_pause_s: f64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            min_pause_s: 0.55,
            pre_roll_s: 0.25,
            post_roll_s: 0.3,
            max_utterance_s: 28.0,
            long_utterance_s: 8.0,
            long_min_pause_s: 0.3,
        }
    }
}

/// A finished utterance: sample range on the stream's 16 kHz clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtteranceSpan {
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
    /// Whether it was cut at the length limit rather than at a pause.
    pub forced: bool,
    /// Speech inside it (first speech start to last speech end), seconds.
    pub speech_s: f64,
}

impl UtteranceSpan {
    /// Start in seconds.
    pub fn start_s(&self) -> f64 {
        self.start as f64 / f64::from(TARGET_RATE)
    }

    /// End in seconds.
    pub fn end_s(&self) -> f64 {
        self.end as f64 / f64::from(TARGET_RATE)
    }
}

/// Streaming segmenter: feed VAD events and the stream position; it reports utterances once
/// the pause after them is long enough (or they hit the length limit).
#[derive(Debug, Clone)]
pub struct Segmenter {
    config: SegmenterConfig,
    /// Start of the open utterance (seconds), if speech has begun.
    open_start: Option<f64>,
    /// End of the last speech inside the open utterance, if speech has ended.
    last_end: Option<f64>,
}

fn to_sample(s: f64) -> usize {
    (s.max(0.0) * f64::from(TARGET_RATE)).round() as usize
}

impl Segmenter {
    /// A segmenter with these settings.
    pub fn new(config: SegmenterConfig) -> Self {
        Segmenter {
            config,
            open_start: None,
            last_end: None,
        }
    }

    /// Whether an utterance is open (speech began and has not been cut yet).
    pub fn is_open(&self) -> bool {
        self.open_start.is_some()
    }

    /// Start of the open utterance in samples, including the pre-roll.
    pub fn open_start_sample(&self) -> Option<usize> {
        self.open_start
            .map(|s| to_sample(s - self.config.pre_roll_s))
    }

    /// Applies one VAD event.
    pub fn on_event(&mut self, event: VadEvent) {
        match event {
            VadEvent::SpeechStart { at_s } => {
                if self.open_start.is_none() {
                    self.open_start = Some(at_s);
                }
                self.last_end = None;
            }
            VadEvent::SpeechEnd { at_s } => {
                if self.open_start.is_some() {
                    self.last_end = Some(at_s);
                }
            }
        }
    }

    /// Advances the clock to `now_s` (seconds of audio received); returns an utterance if one
    /// is complete.
    pub fn poll(&mut self, now_s: f64) -> Option<UtteranceSpan> {
        let start = self.open_start?;
        let c = self.config;
        let needed = if self
            .last_end
            .is_some_and(|end| end - start >= c.long_utterance_s)
        {
            c.long_min_pause_s.min(c.min_pause_s)
        } else {
            c.min_pause_s
        };
        if let Some(end) = self.last_end
            && now_s - end >= needed
        {
            return Some(self.close(start, end, end + c.post_roll_s.min(now_s - end), false));
        }
        if now_s - start >= c.max_utterance_s {
            let cut = start + c.max_utterance_s;
            let span = self.close(start, cut, cut, true);
            // Speech goes on: the next utterance starts where this one was cut.
            if self.last_end.is_none() {
                self.open_start = Some(cut + c.pre_roll_s);
            }
            return Some(span);
        }
        None
    }

    /// Ends the stream: returns the open utterance, if any.
    pub fn finish(&mut self, now_s: f64) -> Option<UtteranceSpan> {
        let start = self.open_start?;
        let speech_end = self.last_end.unwrap_or(now_s);
        let end = self
            .last_end
            .map(|e| (e + self.config.post_roll_s).min(now_s))
            .unwrap_or(now_s);
        Some(self.close(start, speech_end, end, false))
    }

    fn close(&mut self, start: f64, speech_end: f64, end: f64, forced: bool) -> UtteranceSpan {
        self.open_start = None;
        self.last_end = None;
        UtteranceSpan {
            start: to_sample(start - self.config.pre_roll_s),
            end: to_sample(end),
            forced,
            speech_s: (speech_end - start).max(0.0),
        }
    }

    /// Forgets the open utterance.
    pub fn reset(&mut self) {
        self.open_start = None;
        self.last_end = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_after_a_pause_not_before() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        s.on_event(VadEvent::SpeechStart { at_s: 1.0 });
        s.on_event(VadEvent::SpeechEnd { at_s: 2.0 });
        assert_eq!(s.poll(2.3), None);
        s.on_event(VadEvent::SpeechStart { at_s: 2.35 });
        s.on_event(VadEvent::SpeechEnd { at_s: 3.0 });
        assert_eq!(s.poll(3.5), None);
        let u = s.poll(3.6).unwrap();
        assert_eq!((u.start, u.end, u.forced), (12_000, 52_800, false));
        assert!((u.speech_s - 2.0).abs() < 1e-9);
        assert_eq!(s.poll(10.0), None);
    }

    #[test]
    fn long_utterances_end_at_shorter_pauses() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        s.on_event(VadEvent::SpeechStart { at_s: 0.0 });
        s.on_event(VadEvent::SpeechEnd { at_s: 3.0 });
        assert_eq!(s.poll(3.4), None, "a short utterance needs the full pause");
        s.on_event(VadEvent::SpeechStart { at_s: 3.4 });
        s.on_event(VadEvent::SpeechEnd { at_s: 9.0 });
        assert!(s.poll(9.35).is_some(), "a long one ends at a shorter pause");
    }

    #[test]
    fn force_cuts_long_speech() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        s.on_event(VadEvent::SpeechStart { at_s: 0.5 });
        let u = s.poll(28.6).unwrap();
        assert!(u.forced);
        assert!(u.end_s() - u.start_s() <= 28.3);
        assert!(s.is_open(), "speech continues into a new utterance");
    }
}
