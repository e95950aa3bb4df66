//! Client text frames of the interview socket: every input is a message or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_server::live::protocol::parse_client_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_client_message(text);
    }
});
