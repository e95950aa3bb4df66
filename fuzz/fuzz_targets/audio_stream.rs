//! Streamed microphone audio: Opus packets in any order and size (with concealment of gaps),
//! and PCM of any declared rate and channel count (16-bit, and floats including NaN and
//! infinities) through the live front-end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_engine::audio::{AudioFrontEnd, OpusPacketDecoder, VadConfig};

const RATES: [u32; 6] = [8_000, 16_000, 22_050, 44_100, 48_000, 96_000];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            // Length-prefixed Opus packets; a zero length asks for concealment.
            let Ok(mut decoder) = OpusPacketDecoder::new() else {
                return;
            };
            let mut rest = rest;
            while let Some((&len, tail)) = rest.split_first() {
                let len = usize::from(len).min(tail.len());
                let (packet, tail) = tail.split_at(len);
                if packet.is_empty() {
                    let _ = decoder.conceal(1 + usize::from(len % 4));
                } else {
                    let _ = decoder.decode(packet);
                }
                rest = tail;
            }
        }
        1 => {
            let rate = RATES[usize::from(mode / 3) % RATES.len()];
            let channels = 1 + usize::from(mode / 18) % 2;
            let Ok(mut front) = AudioFrontEnd::new(rate, channels, VadConfig::default()) else {
                return;
            };
            for chunk in rest.chunks(641) {
                let _ = front.push_pcm_s16le(chunk);
            }
            let _ = front.finish();
        }
        _ => {
            let rate = RATES[usize::from(mode / 3) % RATES.len()];
            let Ok(mut front) = AudioFrontEnd::new(rate, 1, VadConfig::default()) else {
                return;
            };
            let samples: Vec<f32> = rest
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            for chunk in samples.chunks(160) {
                let _ = front.push_f32(chunk);
            }
            let _ = front.finish();
        }
    }
});
