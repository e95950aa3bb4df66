//! Decoding: WAV, FLAC, Ogg Vorbis and MP3 through symphonia; Ogg Opus files and raw Opus
//! packets (WebRTC) through libopus. Output is mono f32 at the source rate.

use std::io::Cursor;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{AudioError, check_rate};

/// Sample rate of every Opus decoder output.
pub const OPUS_RATE: u32 = 48_000;
/// Largest Opus frame: 120 ms at 48 kHz.
const OPUS_MAX_FRAME: usize = 5760;

/// Limits applied while decoding untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Longest accepted duration in seconds (interview answers are minutes, not hours).
    pub max_seconds: f64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_seconds: 3600.0,
        }
    }
}

/// A decoded clip: mono samples in [-1, 1] at the source rate.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Source sample rate in Hz.
    pub sample_rate: u32,
    /// Channels in the source (downmixed to mono here).
    pub channels: usize,
    /// Mono samples.
    pub samples: Vec<f32>,
}

impl DecodedAudio {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Decodes an audio file. The file name appears in every error.
pub fn decode_file(path: &Path, limits: DecodeLimits) -> Result<DecodedAudio, AudioError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| AudioError::Read {
        source_name: name.clone(),
        message: e.to_string(),
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    decode_bytes(bytes, ext.as_deref(), &name, limits)
}

/// Decodes an in-memory file (an upload, a test vector).
pub fn decode_bytes(
    bytes: Vec<u8>,
    extension: Option<&str>,
    name: &str,
    limits: DecodeLimits,
) -> Result<DecodedAudio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty {
            source_name: name.into(),
        });
    }
    let audio = if is_ogg_opus(&bytes) {
        decode_ogg_opus(&bytes, name, limits)?
    } else {
        // A malformed file can trip an arithmetic check inside a symphonia decoder (fuzzing
        // found one in its FLAC LPC); that is a bad file, not a reason to take down the caller.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decode_symphonia(bytes, extension, name, limits)
        }))
        .unwrap_or_else(|_| {
            Err(AudioError::Corrupt {
                source_name: name.into(),
                message: "the decoder failed on this data: the file is malformed".into(),
            })
        })?
    };
    if audio.samples.is_empty() {
        return Err(AudioError::Empty {
            source_name: name.into(),
        });
    }
    if let Some(i) = audio.samples.iter().position(|s| !s.is_finite()) {
        return Err(AudioError::NonFinite {
            at_s: i as f64 / f64::from(audio.sample_rate),
        });
    }
    Ok(audio)
}

fn is_ogg_opus(bytes: &[u8]) -> bool {
    // The first page of an Ogg Opus stream carries the OpusHead packet right after the
    // page header and segment table.
    bytes.starts_with(b"OggS")
        && bytes.len() > 40
        && bytes[..64.min(bytes.len())]
            .windows(8)
            .any(|w| w == b"OpusHead")
}

fn downmix_into(out: &mut Vec<f32>, interleaved: &[f32], channels: usize) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
    } else {
        let scale = 1.0 / channels as f32;
        out.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
    }
}

fn decode_symphonia(
    bytes: Vec<u8>,
    extension: Option<&str>,
    name: &str,
    limits: DecodeLimits,
) -> Result<DecodedAudio, AudioError> {
    let corrupt = |message: String| AudioError::Corrupt {
        source_name: name.into(),
        message,
    };
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(what) => AudioError::Unsupported {
                source_name: name.into(),
                message: format!("not a recognised audio file ({what})"),
            },
            other => corrupt(other.to_string()),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported {
            source_name: name.into(),
            message: "no audio track".into(),
        })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::Unsupported {
            source_name: name.into(),
            message: "track has no audio codec parameters".into(),
        })?
        .clone();
    if let Some(rate) = params.sample_rate {
        check_rate(rate)?;
    }
    if let Some(ch) = &params.channels
        && (ch.count() > 2 || ch.count() == 0)
    {
        return Err(AudioError::UnsupportedChannels {
            channels: ch.count(),
        });
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Unsupported {
            source_name: name.into(),
            message: e.to_string(),
        })?;
    let mut samples = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated tail ends the stream; what decoded so far is kept.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(msg)) => {
                tracing::debug!(file = name, msg, "skipping undecodable packet");
                continue;
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let spec = buf.spec();
        rate = spec.rate();
        check_rate(rate)?;
        channels = spec.channels().count();
        if channels == 0 || channels > 2 {
            return Err(AudioError::UnsupportedChannels { channels });
        }
        interleaved.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut interleaved);
        downmix_into(&mut samples, &interleaved, channels);
        if samples.len() as f64 > limits.max_seconds * f64::from(rate) {
            return Err(AudioError::TooLong {
                source_name: name.into(),
                limit_s: limits.max_seconds,
            });
        }
    }
    if rate == 0 {
        return Err(AudioError::Empty {
            source_name: name.into(),
        });
    }
    Ok(DecodedAudio {
        sample_rate: rate,
        channels,
        samples,
    })
}

fn decode_ogg_opus(
    bytes: &[u8],
    name: &str,
    limits: DecodeLimits,
) -> Result<DecodedAudio, AudioError> {
    let corrupt = |message: String| AudioError::Corrupt {
        source_name: name.into(),
        message,
    };
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let head = reader
        .read_packet()
        .map_err(|e| corrupt(e.to_string()))?
        .ok_or_else(|| corrupt("no OpusHead packet".into()))?;
    let data = &head.data;
    if data.len() < 19 || &data[..8] != b"OpusHead" {
        return Err(corrupt("first packet is not OpusHead".into()));
    }
    let channels = usize::from(data[9]);
    if channels == 0 || channels > 2 {
        return Err(AudioError::UnsupportedChannels { channels });
    }
    let pre_skip = usize::from(u16::from_le_bytes([data[10], data[11]]));
    let mut decoder = OpusPacketDecoder::new()?;
    let mut samples = Vec::new();
    let mut index = 0usize;
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) if samples.is_empty() => return Err(corrupt(e.to_string())),
            // A broken tail keeps what decoded before it.
            Err(_) => break,
        };
        index += 1;
        if index == 1 && packet.data.starts_with(b"OpusTags") {
            continue;
        }
        samples.extend_from_slice(decoder.decode(&packet.data)?);
        if samples.len() as f64 > limits.max_seconds * f64::from(OPUS_RATE) {
            return Err(AudioError::TooLong {
                source_name: name.into(),
                limit_s: limits.max_seconds,
            });
        }
    }
    let skip = pre_skip.min(samples.len());
    samples.drain(..skip);
    Ok(DecodedAudio {
        sample_rate: OPUS_RATE,
        channels,
        samples,
    })
}

/// Decodes a stream of Opus packets (one per RTP payload) to mono 48 kHz, with packet-loss
/// concealment for gaps. The output buffer is allocated once and reused.
pub struct OpusPacketDecoder {
    decoder: opus::Decoder,
    out: Vec<f32>,
}

impl std::fmt::Debug for OpusPacketDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusPacketDecoder").finish_non_exhaustive()
    }
}

impl OpusPacketDecoder {
    /// A mono decoder at 48 kHz (stereo streams are downmixed by libopus).
    pub fn new() -> Result<Self, AudioError> {
        let decoder = opus::Decoder::new(OPUS_RATE, opus::Channels::Mono)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        Ok(OpusPacketDecoder {
            decoder,
            out: vec![0.0; OPUS_MAX_FRAME],
        })
    }

    /// Decodes one packet. An empty packet yields no samples (WebRTC sends a few of them and
    /// decoding them would produce concealment noise).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[f32], AudioError> {
        if packet.is_empty() {
            return Ok(&[]);
        }
        let n = self
            .decoder
            .decode_float(packet, &mut self.out, false)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        Ok(&self.out[..n])
    }

    /// Synthesises `frames` samples of concealment for lost packets (at most 120 ms a call).
    pub fn conceal(&mut self, frames: usize) -> Result<&[f32], AudioError> {
        let frames = frames.min(OPUS_MAX_FRAME);
        let n = self
            .decoder
            .decode_float(&[], &mut self.out[..frames], false)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        Ok(&self.out[..n])
    }

    /// Forgets decoder state (a new stream).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.decoder
            .reset_state()
            .map_err(|e| AudioError::Opus(e.to_string()))
    }
}
