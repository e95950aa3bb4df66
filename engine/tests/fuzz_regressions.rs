//! Every crash `make fuzz` found, replayed the way its fuzz target reads the bytes
//! (`fuzz/fuzz_targets/`): each must now end in a typed error or a result, never a panic.
//! Inputs live in `fuzz/regressions/<target>/`.
#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use nextmark_engine::audio::{AudioFrontEnd, DecodeLimits, VadConfig, decode_bytes};
use nextmark_engine::model::{read_ct2_variables, verify_ggml_reader};

/// The saved inputs of one fuzz target (at least one, so a moved folder fails loudly).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no inputs in {}", dir.display());
    found
}

#[test]
fn audio_files_that_crashed_a_decoder_are_errors() {
    // The target: first byte picks the extension, the rest is the file.
    const EXTENSIONS: [Option<&str>; 7] = [
        None,
        Some("wav"),
        Some("flac"),
        Some("ogg"),
        Some("opus"),
        Some("mp3"),
        Some("webm"),
    ];
    for (path, data) in inputs("audio_file") {
        let (&selector, bytes) = data.split_first().unwrap();
        let extension = EXTENSIONS[usize::from(selector) % EXTENSIONS.len()];
        // A FLAC stream whose LPC overflowed inside symphonia: now a clear error or audio.
        let result = decode_bytes(
            bytes.to_vec(),
            extension,
            "fuzz",
            DecodeLimits { max_seconds: 5.0 },
        );
        if let Err(e) = result {
            assert!(!e.to_string().is_empty(), "{}", path.display());
        }
    }
}

#[test]
fn huge_float_samples_are_clipped_not_a_resampler_panic() {
    const RATES: [u32; 6] = [8_000, 16_000, 22_050, 44_100, 48_000, 96_000];
    for (path, data) in inputs("audio_stream") {
        let (&mode, rest) = data.split_first().unwrap();
        assert_eq!(mode % 3, 2, "{}: an f32 input", path.display());
        let rate = RATES[usize::from(mode / 3) % RATES.len()];
        let mut front = AudioFrontEnd::new(rate, 1, VadConfig::default()).unwrap();
        let samples: Vec<f32> = rest
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut out = 0;
        for chunk in samples.chunks(160) {
            if let Ok(pushed) = front.push_f32(chunk) {
                assert!(pushed.audio.iter().all(|s| s.is_finite()));
                out += pushed.audio.len();
            }
        }
        out += front.finish().unwrap().audio.len();
        assert!(out > 0, "{}", path.display());
    }
}

#[test]
fn model_files_with_absurd_sizes_are_errors() {
    for (path, data) in inputs("model_headers") {
        let (&mode, rest) = data.split_first().unwrap();
        let name = Path::new("fuzz.bin");
        // A ggml tensor whose element count overflowed the size computation.
        let error = if mode % 2 == 0 {
            read_ct2_variables(&mut &rest[..], name)
                .unwrap_err()
                .to_string()
        } else {
            verify_ggml_reader(&mut &rest[..], rest.len() as u64, name)
                .unwrap_err()
                .to_string()
        };
        assert!(error.contains("fuzz.bin"), "{}: {error}", path.display());
    }
}

#[test]
fn a_ct2_file_claiming_a_huge_variable_fails_without_allocating_it() {
    // Version 6, "WhisperSpec", revision 1, one variable "w" of shape [1 << 30] f32 with a
    // matching 4 GiB byte count, then no data: truncated, found before 4 GiB are reserved.
    let mut bytes = 6u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&12u16.to_le_bytes());
    bytes.extend_from_slice(b"WhisperSpec\0");
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(b"w\0");
    bytes.push(1);
    bytes.extend_from_slice(&(1u32 << 28).to_le_bytes());
    bytes.push(0); // float32
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    let error = read_ct2_variables(&mut &bytes[..], Path::new("big.bin")).unwrap_err();
    assert!(
        error.to_string().contains("big.bin"),
        "{error}: a truncated file, named"
    );
}
