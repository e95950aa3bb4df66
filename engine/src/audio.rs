//! The audio front-end: decode any supported input, resample to 16 kHz mono, detect voice
//! activity and judge recording quality. Everything here is incremental and allocation-light so
//! the same code serves files, sockets and benchmarks.

pub mod decode;
pub mod frontend;
pub mod quality;
pub mod resample;
pub mod vad;

pub use decode::{DecodeLimits, DecodedAudio, OpusPacketDecoder, decode_bytes, decode_file};
pub use frontend::{AudioFrontEnd, FrontEndOutput};
pub use quality::{QualityFlag, QualityReport, analyze_quality};
pub use resample::StreamResampler;
pub use vad::{Vad, VadConfig, VadEvent};

/// The sample rate everything downstream of the front-end works at.
pub const TARGET_RATE: u32 = 16_000;
/// Lowest input sample rate accepted.
pub const MIN_RATE: u32 = 8_000;
/// Highest input sample rate accepted.
pub const MAX_RATE: u32 = 96_000;

/// Errors of the audio front-end. Every variant says what was wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The input could not be read at all.
    #[error("{source_name}: {message}")]
    Read {
        /// File name or stream label.
        source_name: String,
        /// What failed.
        message: String,
    },
    /// The container or codec is not one we decode.
    #[error("{source_name}: unsupported audio: {message}")]
    Unsupported {
        /// File name or stream label.
        source_name: String,
        /// What is unsupported.
        message: String,
    },
    /// The data is corrupt or truncated.
    #[error("{source_name}: corrupt audio: {message}")]
    Corrupt {
        /// File name or stream label.
        source_name: String,
        /// What is corrupt.
        message: String,
    },
    /// The input holds no audio samples.
    #[error("{source_name}: no audio samples")]
    Empty {
        /// File name or stream label.
        source_name: String,
    },
    /// A sample rate outside 8–96 kHz.
    #[error("sample rate {rate} Hz is outside the supported {MIN_RATE}–{MAX_RATE} Hz")]
    UnsupportedRate {
        /// The declared rate.
        rate: u32,
    },
    /// A channel count we cannot downmix.
    #[error("{channels} channels are not supported (mono or stereo only)")]
    UnsupportedChannels {
        /// The declared channel count.
        channels: usize,
    },
    /// NaN or infinite samples.
    #[error("non-finite sample (NaN or infinity) at {at_s:.3} s")]
    NonFinite {
        /// Where, on the input's clock.
        at_s: f64,
    },
    /// Longer than the configured limit.
    #[error("{source_name}: longer than the limit of {limit_s:.0} s")]
    TooLong {
        /// File name or stream label.
        source_name: String,
        /// The limit in seconds.
        limit_s: f64,
    },
    /// The Opus decoder rejected a packet.
    #[error("opus: {0}")]
    Opus(String),
}

/// Checks a sample rate against the supported range.
pub fn check_rate(rate: u32) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::UnsupportedRate { rate })
    }
}

/// Level in dBFS of a block of samples (RMS), floored at -120 dB.
pub fn rms_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let energy: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    (20.0 * rms.max(1e-6).log10()) as f32
}
