//! WebRTC signalling from the browser: SDP offers and ICE candidates (JSON and candidate
//! line) parse or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_server::live::webrtc::{parse_candidate, parse_offer};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = parse_offer(text);
        }
        1 => {
            if let Ok(value) = serde_json::from_str(text) {
                let _ = parse_candidate(value);
            }
        }
        _ => {
            // A bare candidate line inside well-formed JSON.
            let _ = parse_candidate(serde_json::json!({"candidate": text, "sdpMid": "0"}));
        }
    }
});
