//! The microphone check before an interview: the page uploads a short test recording and gets
//! the engine's quality verdict (too quiet, clipping, noisy, …) in words an applicant can act
//! on, before anything is recorded for the interview.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use nextmark_engine::audio::{
    DecodeLimits, QualityFlag, QualityReport, StreamResampler, analyze_quality, decode_bytes,
};
use serde::Serialize;

use crate::live::LiveShared;
use crate::platform::error::ApiError;
use crate::platform::store::InterviewStatus;

/// Largest accepted upload: 20 s of 48 kHz stereo 16-bit PCM is 3.8 MB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Longest test recording analysed.
const MAX_SECONDS: f64 = 20.0;
/// Shortest test recording that says anything.
const MIN_SECONDS: f64 = 0.5;

/// One problem found in the test recording.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MicProblem {
    /// The engine's flag (`too_quiet`, `clipping`, `noisy`, `no_speech`, …).
    pub flag: QualityFlag,
    /// What it means and what to do, for the applicant.
    pub message: String,
}

/// The answer of `POST /v1/interview-links/{token}/mic-check`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MicCheck {
    /// `good` when nothing is wrong, `problems` otherwise.
    pub verdict: &'static str,
    /// One sentence summing up the verdict.
    pub summary: String,
    /// The problems, most important first.
    pub problems: Vec<MicProblem>,
    /// Length analysed, seconds.
    pub duration_s: f64,
    /// Level of the speech, dBFS.
    pub speech_level_dbfs: f32,
    /// Level of the background, dBFS.
    pub noise_level_dbfs: f32,
    /// Speech above the background, dB.
    pub snr_db: f32,
    /// Loudest sample, 0–1.
    pub peak: f32,
}

/// What an applicant can do about a flag, in plain words.
fn advice(flag: QualityFlag) -> &'static str {
    match flag {
        QualityFlag::NoSpeech => {
            "We could not hear you. Check that the right microphone is selected and not muted, \
             then speak as you normally would."
        }
        QualityFlag::TooQuiet => {
            "Your voice is very quiet. Move closer to the microphone or raise its input level."
        }
        QualityFlag::Clipping => {
            "Your voice is so loud that it distorts. Move back a little or lower the input level."
        }
        QualityFlag::Noisy => {
            "There is a lot of background noise. A quieter room or a headset would help."
        }
        QualityFlag::Dropouts => {
            "The audio has gaps. Close other programs using the microphone, or try another \
             microphone or browser."
        }
        QualityFlag::LongSilence => "There were long silences in the test.",
        QualityFlag::DcOffset => {
            "The microphone signal looks faulty. Try another microphone if you can."
        }
    }
}

/// Turns the engine's report into the applicant's verdict.
pub fn verdict(report: &QualityReport) -> MicCheck {
    // A short test has no long silences worth mentioning.
    let problems: Vec<MicProblem> = report
        .flags
        .iter()
        .filter(|f| **f != QualityFlag::LongSilence)
        .map(|&flag| MicProblem {
            flag,
            message: advice(flag).to_string(),
        })
        .collect();
    let summary = if problems.is_empty() {
        "Your microphone sounds good.".to_string()
    } else if problems.iter().any(|p| p.flag == QualityFlag::NoSpeech) {
        "We could not hear any speech in the test.".to_string()
    } else {
        "Your microphone works, but the recording could be clearer.".to_string()
    };
    MicCheck {
        verdict: if problems.is_empty() {
            "good"
        } else {
            "problems"
        },
        summary,
        problems,
        duration_s: report.duration_s,
        speech_level_dbfs: report.speech_level_dbfs,
        noise_level_dbfs: report.noise_level_dbfs,
        snr_db: report.snr_db,
        peak: report.peak,
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Upload {
    /// A WAV file.
    Wav,
    /// Raw big-endian 16-bit PCM (`audio/L16`, RFC 2586).
    L16 { rate: u32, channels: u16 },
}

/// Reads the `Content-Type`: `audio/wav` (also `audio/x-wav`, `audio/wave`) or
/// `audio/L16;rate=N[;channels=C]`.
fn upload_kind(headers: &HeaderMap) -> Result<Upload, ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the test recording as audio/wav or audio/L16;rate=N;channels=C",
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsupported)?;
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").to_ascii_lowercase();
    match essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Ok(Upload::Wav),
        "audio/l16" => {
            let mut rate = None;
            let mut channels = 1u16;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                match key.trim().to_ascii_lowercase().as_str() {
                    "rate" => rate = value.trim().parse::<u32>().ok(),
                    "channels" => {
                        channels = value.trim().parse().map_err(|_| {
                            ApiError::invalid("content-type", "channels must be 1 or 2")
                        })?
                    }
                    _ => {}
                }
            }
            let rate = rate.ok_or_else(|| {
                ApiError::invalid("content-type", "audio/L16 needs a rate parameter")
            })?;
            if !(1..=2).contains(&channels) {
                return Err(ApiError::invalid("content-type", "channels must be 1 or 2"));
            }
            nextmark_engine::audio::check_rate(rate)
                .map_err(|e| ApiError::invalid("content-type", e.to_string()))?;
            Ok(Upload::L16 { rate, channels })
        }
        _ => Err(unsupported()),
    }
}

/// Decodes the upload to mono samples at its own rate.
fn decode(upload: Upload, bytes: Bytes) -> Result<(Vec<f32>, u32), ApiError> {
    let bad = |message: String| ApiError::invalid("body", message);
    match upload {
        Upload::Wav => {
            let audio = decode_bytes(
                bytes.to_vec(),
                Some("wav"),
                "test recording",
                DecodeLimits {
                    max_seconds: MAX_SECONDS,
                },
            )
            .map_err(|e| bad(e.to_string()))?;
            Ok((audio.samples, audio.sample_rate))
        }
        Upload::L16 { rate, channels } => {
            let frame = 2 * usize::from(channels);
            if !bytes.len().is_multiple_of(frame) {
                return Err(bad(format!(
                    "{} bytes are not a whole number of {channels}-channel 16-bit samples",
                    bytes.len()
                )));
            }
            let samples = bytes
                .chunks_exact(frame)
                .map(|f| {
                    let sum: f32 = f
                        .chunks_exact(2)
                        .map(|b| f32::from(i16::from_be_bytes([b[0], b[1]])) / 32768.0)
                        .sum();
                    sum / f32::from(channels)
                })
                .collect();
            Ok((samples, rate))
        }
    }
}

/// Decodes, resamples to 16 kHz and analyses (CPU work: run it off the async runtime).
fn analyse(upload: Upload, bytes: Bytes) -> Result<MicCheck, ApiError> {
    let (samples, rate) = decode(upload, bytes)?;
    let seconds = samples.len() as f64 / f64::from(rate);
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::invalid(
            "body",
            format!(
                "the test recording lasts {seconds:.1} s; send {MIN_SECONDS}–{MAX_SECONDS:.0} s"
            ),
        ));
    }
    let mut resampler =
        StreamResampler::new(rate).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let mut at_16k = Vec::with_capacity((seconds * 16_000.0) as usize + 16);
    resampler
        .push(&samples, &mut at_16k)
        .and_then(|()| resampler.flush(&mut at_16k))
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    Ok(verdict(&analyze_quality(&at_16k)))
}

/// `POST /v1/interview-links/{token}/mic-check`: the quality verdict of a short test recording
/// (WAV or `audio/L16`, 0.5–20 s). Nothing is stored. The link token is the credential; a
/// completed interview answers 409 as its live socket does.
pub async fn mic_check(
    State(live): State<Arc<LiveShared>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MicCheck>, ApiError> {
    if token.len() > 256 {
        return Err(ApiError::not_found("interview link"));
    }
    let platform = &live.platform;
    let interview = platform
        .store
        .get_interview_by_token(&token, platform.now())
        .await?;
    if interview.status == InterviewStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "interview_completed",
            "this interview is already completed",
        ));
    }
    let upload = upload_kind(&headers)?;
    let bytes = body.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            },
            format!("the test recording could not be read: {}", e.body_text()),
        )
    })?;
    let checked = tokio::task::spawn_blocking(move || analyse(upload, bytes))
        .await
        .map_err(|e| {
            ApiError::internal(anyhow::Error::new(e).context("analysing a test recording"))
        })??;
    tracing::debug!(
        interview = %interview.id,
        verdict = checked.verdict,
        speech_dbfs = checked.speech_level_dbfs,
        "microphone check"
    );
    Ok(Json(checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn speechlike(rate: u32, amp: f32) -> Vec<f32> {
        // Syllable-like bursts of a 220 Hz tone (with harmonics) over faint noise.
        let mut state = 12345u32;
        (0..rate * 3)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = ((state >> 16) as f32 / 32768.0 - 1.0) * 0.001;
                let t = i as f32 / rate as f32;
                let on = (t * 4.0).fract() < 0.6 && t > 0.5;
                let voice = if on {
                    amp * ((2.0 * std::f32::consts::PI * 220.0 * t).sin()
                        + 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin())
                } else {
                    0.0
                };
                voice + noise
            })
            .collect()
    }

    fn wav(samples: &[f32], rate: u32) -> Bytes {
        let data: Vec<u8> = samples
            .iter()
            .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
            .collect();
        let mut out = Vec::with_capacity(44 + data.len());
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        Bytes::from(out)
    }

    fn content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn a_clear_voice_is_good_and_a_quiet_one_is_told_to_come_closer() {
        let good = analyse(Upload::Wav, wav(&speechlike(48_000, 0.3), 48_000)).expect("good");
        assert_eq!(good.verdict, "good", "{good:?}");
        assert!(good.problems.is_empty());
        let quiet = analyse(Upload::Wav, wav(&speechlike(48_000, 0.004), 48_000)).expect("quiet");
        assert_eq!(quiet.verdict, "problems", "{quiet:?}");
        assert!(
            quiet
                .problems
                .iter()
                .any(|p| p.flag == QualityFlag::TooQuiet),
            "{quiet:?}"
        );
        let silent = analyse(Upload::Wav, wav(&vec![0.0; 48_000 * 2], 48_000)).expect("silent");
        assert_eq!(silent.problems[0].flag, QualityFlag::NoSpeech, "{silent:?}");
    }

    #[test]
    fn clipping_is_reported() {
        let loud: Vec<f32> = speechlike(16_000, 3.0);
        let report = analyse(Upload::Wav, wav(&loud, 16_000)).expect("loud");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.flag == QualityFlag::Clipping),
            "{report:?}"
        );
    }

    #[test]
    fn l16_is_big_endian_and_may_be_stereo() {
        let mono = speechlike(16_000, 0.3);
        let bytes: Vec<u8> = mono
            .iter()
            .flat_map(|s| {
                let v = ((s * 32767.0) as i16).to_be_bytes();
                [v, v].concat()
            })
            .collect();
        let upload = upload_kind(&content_type("audio/L16; rate=16000; channels=2")).expect("ok");
        assert_eq!(
            upload,
            Upload::L16 {
                rate: 16_000,
                channels: 2
            }
        );
        let report = analyse(upload, Bytes::from(bytes)).expect("analysed");
        assert_eq!(report.verdict, "good", "{report:?}");
        assert!((report.duration_s - 3.0).abs() < 0.01);
    }

    #[test]
    fn bad_uploads_get_clear_errors() {
        let e = upload_kind(&content_type("application/json")).expect_err("json");
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(upload_kind(&HeaderMap::new()).is_err());
        let e = upload_kind(&content_type("audio/L16")).expect_err("no rate");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = upload_kind(&content_type("audio/L16;rate=1000")).expect_err("low rate");
        assert_eq!(e.field.as_deref(), Some("content-type"));
        let e = analyse(Upload::Wav, Bytes::from_static(b"RIFF nonsense")).expect_err("junk");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = analyse(Upload::Wav, wav(&[0.1; 1600], 16_000)).expect_err("too short");
        assert!(e.message.contains("0.1 s"), "{}", e.message);
        let e = analyse(
            Upload::L16 {
                rate: 16_000,
                channels: 2,
            },
            Bytes::from_static(&[0, 1, 2]),
        )
        .expect_err("odd");
        assert!(e.message.contains("whole number"), "{}", e.message);
    }
}
