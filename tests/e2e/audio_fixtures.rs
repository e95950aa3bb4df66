//! The audio front-end against the committed fixtures and synthetic edge cases: every format
//! decodes at its rate, the VAD finds the answers' ends and never speech in silence or noise,
//! and bad files give typed errors.

use nextmark_engine::audio::{
    AudioError, DecodeLimits, QualityFlag, StreamResampler, Vad, VadConfig, VadEvent,
    analyze_quality, decode_bytes, decode_file,
};

use crate::helpers::{fixtures_dir, manifest};

fn to_16k(rate: u32, samples: &[f32]) -> Vec<f32> {
    let mut r = StreamResampler::new(rate).expect("resampler");
    let mut out = Vec::new();
    for chunk in samples.chunks(997) {
        r.push(chunk, &mut out).expect("push");
    }
    r.flush(&mut out).expect("flush");
    out
}

fn vad_events(samples16: &[f32]) -> Vec<VadEvent> {
    let mut vad = Vad::new(VadConfig::default());
    let mut events = Vec::new();
    for chunk in samples16.chunks(320) {
        vad.push(chunk, &mut events);
    }
    vad.finish(&mut events);
    events
}

#[test]
fn every_fixture_decodes_at_its_declared_rate_and_length() {
    let m = manifest();
    let clips = m["clips"].as_array().expect("clips");
    assert!(
        clips.len() >= 18,
        "at least 16 answers plus silence and noise"
    );
    let mut rates = std::collections::BTreeSet::new();
    for clip in clips {
        let file = fixtures_dir().join(clip["file"].as_str().expect("file"));
        let audio = decode_file(&file, DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let declared = clip["sample_rate"].as_u64().expect("rate") as u32;
        assert_eq!(audio.sample_rate, declared, "{}", file.display());
        rates.insert(declared);
        let duration = clip["duration_s"].as_f64().expect("duration");
        assert!(
            (audio.duration_s() - duration).abs() < 0.1,
            "{}: decoded {:.2} s, manifest {duration:.2} s",
            file.display(),
            audio.duration_s()
        );
    }
    for rate in [8_000, 16_000, 44_100, 48_000] {
        assert!(rates.contains(&rate), "no fixture at {rate} Hz");
    }
}

#[test]
fn vad_finds_each_answers_last_voiced_sample_and_no_speech_in_pauses() {
    let m = manifest();
    for clip in m["clips"].as_array().expect("clips") {
        let name = clip["file"].as_str().expect("file");
        let audio =
            decode_file(&fixtures_dir().join(name), DecodeLimits::default()).expect("decode");
        let events = vad_events(&to_16k(audio.sample_rate, &audio.samples));
        match clip["last_voiced_s"].as_f64() {
            None => assert!(
                events.is_empty(),
                "{name}: speech detected in a no-speech clip: {events:?}"
            ),
            Some(last) => {
                let end = events.iter().rev().find_map(|e| match e {
                    VadEvent::SpeechEnd { at_s } => Some(*at_s),
                    VadEvent::SpeechStart { .. } => None,
                });
                let end = end.unwrap_or_else(|| panic!("{name}: no speech end"));
                assert!(
                    (end - last).abs() < 0.35,
                    "{name}: VAD end {end:.2} s, manifest {last:.2} s"
                );
                for pause in clip["pauses"].as_array().expect("pauses") {
                    let (s, e) = (
                        pause["start_s"].as_f64().expect("s"),
                        pause["end_s"].as_f64().expect("e"),
                    );
                    let inside = events.iter().any(|ev| matches!(ev, VadEvent::SpeechStart { at_s } if *at_s > s + 0.1 && *at_s < e - 0.1));
                    assert!(
                        !inside,
                        "{name}: speech detected inside the pause {s:.2}–{e:.2}: {events:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn quality_flags_silence_noise_and_noisy_answers() {
    let dir = fixtures_dir();
    let q = |name: &str| {
        let a = decode_file(&dir.join(name), DecodeLimits::default()).expect("decode");
        analyze_quality(&to_16k(a.sample_rate, &a.samples))
    };
    assert!(q("silence.wav").flags.contains(&QualityFlag::NoSpeech));
    assert!(q("noise.wav").flags.contains(&QualityFlag::NoSpeech));
    let m = manifest();
    let clips = m["clips"].as_array().expect("clips");
    let snr = |noisy: bool| -> Vec<f32> {
        clips
            .iter()
            .filter(|c| c["last_voiced_s"].is_number() && c["noise_snr_db"].is_number() == noisy)
            .map(|c| q(c["file"].as_str().expect("file")).snr_db)
            .collect()
    };
    let (noisy, clean) = (snr(true), snr(false));
    assert!(!noisy.is_empty());
    let worst_clean = clean.iter().copied().fold(f32::INFINITY, f32::min);
    for n in &noisy {
        assert!(
            *n < worst_clean,
            "a 20 dB SNR clip ({n:.1} dB) measured cleaner than a clean one ({worst_clean:.1} dB)"
        );
    }
}

/// A WAV file in memory: `bits` 8/16/24/32 integer PCM, or 32-bit float when `float`.
fn wav(rate: u32, channels: u16, bits: u16, float: bool, frames: &[f32]) -> Vec<u8> {
    let mut data = Vec::new();
    for s in frames {
        for _ in 0..channels {
            match (bits, float) {
                (32, true) => data.extend_from_slice(&s.to_le_bytes()),
                (8, _) => data.push(((s * 127.0) as i32 + 128) as u8),
                (16, _) => data.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes()),
                (24, _) => data.extend_from_slice(&((s * 8_388_607.0) as i32).to_le_bytes()[..3]),
                (32, false) => {
                    data.extend_from_slice(&((s * 2_147_483_647.0) as i32).to_le_bytes())
                }
                _ => unreachable!(),
            }
        }
    }
    let block = channels * bits / 8;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&(if float { 3u16 } else { 1u16 }).to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

fn sine(rate: u32, seconds: f32) -> Vec<f32> {
    (0..(rate as f32 * seconds) as usize)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
        .collect()
}

#[test]
fn wav_rates_depths_and_layouts_decode_to_the_same_level() {
    for rate in [
        8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000,
    ] {
        for (bits, float) in [
            (8, false),
            (16, false),
            (24, false),
            (32, false),
            (32, true),
        ] {
            for channels in [1, 2] {
                let bytes = wav(rate, channels, bits, float, &sine(rate, 0.5));
                let label = format!("{rate} Hz {bits}-bit float={float} ch={channels}");
                let a = decode_bytes(bytes, Some("wav"), &label, DecodeLimits::default())
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(a.sample_rate, rate, "{label}");
                assert_eq!(a.samples.len(), (rate / 2) as usize, "{label}");
                let peak = a.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
                assert!((peak - 0.5).abs() < 0.02, "{label}: peak {peak}");
            }
        }
    }
}

#[test]
fn bad_audio_gives_typed_errors() {
    let limits = DecodeLimits::default();
    let e = decode_bytes(Vec::new(), Some("wav"), "empty.wav", limits).unwrap_err();
    assert!(matches!(e, AudioError::Empty { .. }), "{e}");
    let e = decode_bytes(
        b"definitely not audio, just text".repeat(50),
        None,
        "notes.txt",
        limits,
    )
    .unwrap_err();
    assert!(
        matches!(e, AudioError::Unsupported { .. }) && e.to_string().contains("notes.txt"),
        "{e}"
    );
    let e = decode_bytes(
        wav(4_000, 1, 16, false, &sine(4_000, 0.5)),
        Some("wav"),
        "slow.wav",
        limits,
    )
    .unwrap_err();
    assert!(
        matches!(e, AudioError::UnsupportedRate { rate: 4_000 }),
        "{e}"
    );
    let mut nan = sine(16_000, 0.5);
    nan[4_000] = f32::NAN;
    let e = decode_bytes(
        wav(16_000, 1, 32, true, &nan),
        Some("wav"),
        "nan.wav",
        limits,
    )
    .unwrap_err();
    assert!(
        matches!(e, AudioError::NonFinite { at_s } if (at_s - 0.25).abs() < 1e-6),
        "{e}"
    );
    let short = DecodeLimits { max_seconds: 1.0 };
    let e = decode_bytes(
        wav(16_000, 1, 16, false, &sine(16_000, 3.0)),
        Some("wav"),
        "long.wav",
        short,
    )
    .unwrap_err();
    assert!(matches!(e, AudioError::TooLong { .. }), "{e}");
    // Truncated real files: either the decodable part or a typed error, never a panic.
    for clip in manifest()["clips"].as_array().expect("clips") {
        let name = clip["file"].as_str().expect("file");
        let bytes = std::fs::read(fixtures_dir().join(name)).expect("read");
        for cut in [bytes.len() / 2, 64, 3] {
            let ext = name.rsplit('.').next();
            match decode_bytes(bytes[..cut].to_vec(), ext, name, limits) {
                Ok(a) => assert!(a.duration_s() <= clip["duration_s"].as_f64().expect("d") + 0.1),
                Err(e) => assert!(e.to_string().contains(name), "{e}"),
            }
        }
    }
}
