//! Recording quality: level, clipping, signal-to-noise, dropouts and long silences, turned into
//! named flags that feed the reviewer's "technical issues with the recording" feedback.

use serde::{Deserialize, Serialize};

use super::{TARGET_RATE, rms_dbfs, vad::FRAME};

/// A named problem with a stretch of audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityFlag {
    /// No speech at all.
    NoSpeech,
    /// Speech level below -35 dBFS: hard to transcribe.
    TooQuiet,
    /// More than 0.1 % of samples at full scale.
    Clipping,
    /// Speech less than 15 dB above the noise.
    Noisy,
    /// Runs of exact digital zeros inside the audio (lost packets, a glitching device).
    Dropouts,
    /// A silence of 8 s or more.
    LongSilence,
    /// A constant offset larger than 1 % of full scale.
    DcOffset,
}

impl QualityFlag {
    /// A sentence for applicants and reviewers.
    pub fn describe(self) -> &'static str {
        match self {
            QualityFlag::NoSpeech => "no speech was detected",
            QualityFlag::TooQuiet => "the voice is very quiet; move closer to the microphone",
            QualityFlag::Clipping => {
                "the level is too high and distorts; move back or lower the input gain"
            }
            QualityFlag::Noisy => "background noise is loud compared with the voice",
            QualityFlag::Dropouts => "the audio has gaps (dropped packets or a glitching device)",
            QualityFlag::LongSilence => "there are long silences",
            QualityFlag::DcOffset => "the microphone signal has a constant offset",
        }
    }
}

/// Quality figures of one stretch of 16 kHz audio.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// Length analysed, seconds.
    pub duration_s: f64,
    /// Overall RMS level, dBFS.
    pub level_dbfs: f32,
    /// Level of the loud (speech) frames, dBFS.
    pub speech_level_dbfs: f32,
    /// Level of the quiet (noise) frames, dBFS.
    pub noise_level_dbfs: f32,
    /// Estimated signal-to-noise ratio, dB.
    pub snr_db: f32,
    /// Share of samples at or beyond full scale.
    pub clipping_ratio: f32,
    /// Peak absolute sample.
    pub peak: f32,
    /// Mean sample value.
    pub dc_offset: f32,
    /// Number of digital-zero runs of 20 ms or more surrounded by signal.
    pub dropouts: usize,
    /// Longest stretch without speech, seconds.
    pub longest_silence_s: f64,
    /// Share of frames that are speech.
    pub speech_ratio: f32,
    /// The problems found.
    pub flags: Vec<QualityFlag>,
}

/// Analyses 16 kHz mono audio.
pub fn analyze_quality(samples: &[f32]) -> QualityReport {
    let duration_s = samples.len() as f64 / f64::from(TARGET_RATE);
    let level_dbfs = rms_dbfs(samples);
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let clipped = samples.iter().filter(|s| s.abs() >= 0.999).count();
    let clipping_ratio = if samples.is_empty() {
        0.0
    } else {
        clipped as f32 / samples.len() as f32
    };
    let dc_offset = if samples.is_empty() {
        0.0
    } else {
        (samples.iter().map(|s| f64::from(*s)).sum::<f64>() / samples.len() as f64) as f32
    };
    let mut levels: Vec<f32> = samples.chunks(FRAME).map(rms_dbfs).collect();
    let frame_count = levels.len();
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let pct = |p: f32| -> f32 {
        if sorted.is_empty() {
            -120.0
        } else {
            sorted[((sorted.len() - 1) as f32 * p) as usize]
        }
    };
    let noise_level_dbfs = pct(0.10);
    let speech_threshold = (noise_level_dbfs + 12.0).max(-52.0);
    let speech_levels: Vec<f32> = levels
        .iter()
        .copied()
        .filter(|l| *l > speech_threshold)
        .collect();
    let speech_ratio = if frame_count == 0 {
        0.0
    } else {
        speech_levels.len() as f32 / frame_count as f32
    };
    let speech_level_dbfs = if speech_levels.is_empty() {
        -120.0
    } else {
        let mut s = speech_levels.clone();
        s.sort_by(f32::total_cmp);
        s[s.len() / 2]
    };
    let snr_db = if speech_levels.is_empty() {
        0.0
    } else {
        speech_level_dbfs - noise_level_dbfs
    };
    // Longest run of non-speech frames.
    let mut longest = 0usize;
    let mut run = 0usize;
    for l in &levels {
        if *l > speech_threshold {
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
    }
    let longest_silence_s = longest as f64 * FRAME as f64 / f64::from(TARGET_RATE);
    let dropouts = count_dropouts(samples);
    levels.clear();

    let mut flags = Vec::new();
    if speech_levels.len() < 10 {
        flags.push(QualityFlag::NoSpeech);
    } else {
        if speech_level_dbfs < -35.0 {
            flags.push(QualityFlag::TooQuiet);
        }
        if snr_db < 15.0 {
            flags.push(QualityFlag::Noisy);
        }
    }
    if clipping_ratio > 0.001 {
        flags.push(QualityFlag::Clipping);
    }
    if dropouts > 0 {
        flags.push(QualityFlag::Dropouts);
    }
    if longest_silence_s >= 8.0 && !flags.contains(&QualityFlag::NoSpeech) {
        flags.push(QualityFlag::LongSilence);
    }
    if dc_offset.abs() > 0.01 {
        flags.push(QualityFlag::DcOffset);
    }
    QualityReport {
        duration_s,
        level_dbfs,
        speech_level_dbfs,
        noise_level_dbfs,
        snr_db,
        clipping_ratio,
        peak,
        dc_offset,
        dropouts,
        longest_silence_s,
        speech_ratio,
        flags,
    }
}

/// Runs of at least 20 ms of exact zeros with signal on both sides: real microphones never
/// produce exact digital silence mid-stream, lost packets and broken devices do.
fn count_dropouts(samples: &[f32]) -> usize {
    let min_run = (TARGET_RATE / 50) as usize;
    let mut count = 0;
    let mut run = 0usize;
    let mut seen_signal = false;
    for s in samples {
        if *s == 0.0 {
            run += 1;
        } else {
            if seen_signal && run >= min_run {
                count += 1;
            }
            run = 0;
            seen_signal = true;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiceish(seconds: f32, amp: f32) -> Vec<f32> {
        // A tone switched on and off at syllable rate, like speech's envelope.
        (0..(16_000.0 * seconds) as usize)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let on = ((t * 4.0).fract() < 0.6) as u8 as f32;
                on * amp * (2.0 * std::f32::consts::PI * 200.0 * t).sin()
            })
            .collect()
    }

    fn with_noise(mut s: Vec<f32>, amp: f32) -> Vec<f32> {
        let mut x = 12345u32;
        for v in &mut s {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v += amp * ((x as f32 / u32::MAX as f32) * 2.0 - 1.0);
        }
        s
    }

    #[test]
    fn clean_speech_has_no_flags() {
        let r = analyze_quality(&with_noise(voiceish(5.0, 0.3), 0.0005));
        assert!(r.flags.is_empty(), "{r:?}");
        assert!(r.snr_db > 30.0);
    }

    #[test]
    fn flags_name_the_problems() {
        let quiet = analyze_quality(&with_noise(voiceish(5.0, 0.005), 0.0001));
        assert!(quiet.flags.contains(&QualityFlag::TooQuiet), "{quiet:?}");
        let noisy = analyze_quality(&with_noise(voiceish(5.0, 0.3), 0.08));
        assert!(noisy.flags.contains(&QualityFlag::Noisy), "{noisy:?}");
        let clipped: Vec<f32> = voiceish(5.0, 3.0)
            .iter()
            .map(|s| s.clamp(-1.0, 1.0))
            .collect();
        assert!(
            analyze_quality(&clipped)
                .flags
                .contains(&QualityFlag::Clipping)
        );
        let mut gappy = with_noise(voiceish(5.0, 0.3), 0.001);
        gappy[30_000..31_000].fill(0.0);
        assert!(
            analyze_quality(&gappy)
                .flags
                .contains(&QualityFlag::Dropouts)
        );
        assert_eq!(
            analyze_quality(&vec![0.0; 32_000]).flags,
            vec![QualityFlag::NoSpeech]
        );
        let offset: Vec<f32> = with_noise(voiceish(5.0, 0.2), 0.001)
            .iter()
            .map(|s| s + 0.05)
            .collect();
        assert!(
            analyze_quality(&offset)
                .flags
                .contains(&QualityFlag::DcOffset)
        );
    }
}
