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

static DEFAULT_PANIC_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // `decode_bytes` catches a panic inside a third-party decoder and returns an error;
    // libfuzzer-sys's hook would abort before that catch, so the default hook is restored.
    // A panic nothing catches still aborts the run (libfuzzer-sys checks every input).
    DEFAULT_PANIC_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let extension = EXTENSIONS[usize::from(selector) % EXTENSIONS.len()];
    // Short limits keep each run fast; the limit check itself is under test too.
    let limits = DecodeLimits { max_seconds: 5.0 };
    let _ = decode_bytes(bytes.to_vec(), extension, "fuzz", limits);
});
