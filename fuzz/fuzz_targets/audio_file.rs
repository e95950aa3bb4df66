//! Uploaded and stored audio (mic checks, fixtures, `nextmark transcribe`): any bytes under any
//! extension decode or give an `AudioError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_engine::audio::{DecodeLimits, decode_bytes};

const EXTENSIONS: [Option<&str>; 7] = [
    None,
    Some("wav"),
    Some("flac"),
    Some("ogg"),
    Some("opus"),
    Some("mp3"),
    Some("webm"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let extension = EXTENSIONS[usize::from(selector) % EXTENSIONS.len()];
    // Short limits keep each run fast; the limit check itself is under test too.
    let limits = DecodeLimits { max_seconds: 5.0 };
    let _ = decode_bytes(bytes.to_vec(), extension, "fuzz", limits);
});
