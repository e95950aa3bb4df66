//! Rubric TOML from anyone who can edit the rubrics folder: parse errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_engine::rubric::Rubric;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Rubric::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
