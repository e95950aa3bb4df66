//! The live interview wire protocol (version 1): typed client and server messages carried as
//! JSON text frames on the interview WebSocket, with audio in binary frames. Documented in
//! `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// How the client's microphone audio arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioEncoding {
    /// Binary frames of signed 16-bit little-endian PCM, interleaved when stereo.
    PcmS16le,
    /// Binary frames each holding one Opus packet (as from an Ogg page or RTP payload).
    Opus,
    /// No audio on the socket: it comes over a WebRTC track negotiated with `offer`.
    Webrtc,
}

/// The client's audio format, declared in `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Encoding of the binary frames.
    pub encoding: AudioEncoding,
    /// Sample rate of the PCM, or of the Opus decoder output (48000 for browsers).
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// 1 or 2.
    #[serde(default = "one")]
    pub channels: u16,
}

fn default_rate() -> u32 {
    48_000
}

fn one() -> u16 {
    1
}

/// The spoken-question audio the client wants on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechFormat {
    /// PCM sample rate the server resamples the interviewer's voice to.
    pub sample_rate: u32,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Messages from the client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message: protocol version and audio format.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The microphone audio format.
        audio: AudioFormat,
        /// Question audio as binary PCM frames on this socket: absent = 16 kHz PCM for socket
        /// audio and none for WebRTC (whose voice goes over the track); `null` = none (text
        /// only).
        #[serde(default, deserialize_with = "present")]
        speech: Option<Option<SpeechFormat>>,
    },
    /// The applicant says the answer is finished ("I'm done" button).
    Done,
    /// The applicant asks to hear the question again.
    Repeat,
    /// A typed answer (an accommodation; marked in the report).
    Text {
        /// What the applicant typed.
        text: String,
    },
    /// The applicant is typing an answer: hold the turn open (sent every few seconds while
    /// typing).
    Typing,
    /// The client finished playing the question audio (optional; lets the server start
    /// listening without waiting for the estimated end).
    PlaybackEnded,
    /// Keep-alive; answered by `pong`.
    Ping {
        /// Echoed back.
        #[serde(default)]
        nonce: Option<u64>,
    },
    /// WebRTC: the browser's SDP offer.
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// WebRTC: a trickled ICE candidate (the browser's `RTCIceCandidateInit`).
    Candidate {
        /// The candidate object.
        candidate: serde_json::Value,
    },
    /// The client is leaving on purpose (no resume expected).
    Bye,
}

/// What the server is doing, for the client's indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The interviewer is speaking a question.
    Speaking,
    /// Waiting for or hearing the applicant's answer.
    Listening,
    /// The answer ended; scoring and choosing the next question.
    Thinking,
}

/// Audio that follows a `question` event as binary frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechAudio {
    /// Always `pcm_s16le`.
    pub encoding: String,
    /// Sample rate of the PCM.
    pub sample_rate: u32,
    /// Duration, seconds.
    pub duration_s: f64,
    /// Total bytes in the binary frames that follow.
    pub bytes: usize,
}

/// Messages from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The handshake was accepted.
    Ready {
        /// The interview.
        interview_id: String,
        /// The discipline's display name.
        discipline: String,
        /// Whether this connection continues an interrupted session.
        resumed: bool,
        /// Questions asked so far.
        questions_asked: usize,
    },
    /// A question to show and speak.
    Question {
        /// Stable id: the rubric item id, or `intro`, `warmup`, `probe:<item>:<n>`, `closing`.
        id: String,
        /// The words.
        text: String,
        /// 1-based question number.
        index: usize,
        /// A repetition or rephrasing of the current question.
        again: bool,
        /// The spoken audio sent after this event as binary frames, when requested.
        audio: Option<SpeechAudio>,
        /// After an answer: seconds from the server's decision that the answer ended (or the
        /// typed answer's arrival) to this event: the compute turn latency, including the wait
        /// for the answer's last final transcript.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        turn_latency_s: Option<f64>,
        /// After an answer: why the server decided it had ended: `silence` (it sounded
        /// finished), `long_silence`, `spoken_end` ("that's my answer"), `client_done` (the
        /// button), `no_answer`, `max_duration`, or `typed`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        turn_end: Option<String>,
    },
    /// A caption of what the applicant said.
    Transcript {
        /// The text: for a partial, stable words then the unstable tail.
        text: String,
        /// Words of a partial that will not change any more.
        #[serde(skip_serializing_if = "Option::is_none")]
        stable: Option<String>,
        /// Whether this is the final text of an utterance.
        #[serde(rename = "final")]
        is_final: bool,
        /// Utterance number within the session.
        utterance: u64,
        /// Session audio clock, seconds.
        start_s: f64,
        /// Session audio clock, seconds.
        end_s: f64,
    },
    /// The server's state changed.
    State {
        /// The new state.
        state: SessionState,
    },
    /// Stop playing the question audio now (the applicant started talking).
    StopAudio,
    /// The interview is over.
    Completed {
        /// Where the report can be read.
        report_url: String,
        /// The closing words, if any.
        reason: String,
    },
    /// Something went wrong; `fatal` says whether the server is closing the socket.
    Error {
        /// Machine-readable code.
        code: String,
        /// What happened, for people.
        message: String,
        /// Whether the connection ends.
        fatal: bool,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's nonce.
        nonce: Option<u64>,
    },
    /// WebRTC: the server's SDP answer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// WebRTC: a server ICE candidate.
    Candidate {
        /// The candidate (`RTCIceCandidateInit` JSON).
        candidate: serde_json::Value,
    },
}

impl ServerMessage {
    /// An error event.
    pub fn error(code: &str, message: impl Into<String>, fatal: bool) -> Self {
        ServerMessage::Error {
            code: code.into(),
            message: message.into(),
            fatal,
        }
    }
}

/// Why a client text frame was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    /// Machine-readable code (`bad_json`, `unknown_type`, …).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

/// Parses one client text frame, telling malformed JSON from an unknown message type and a
/// known type with bad fields.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ProtocolError {
        code: "bad_json",
        message: format!("not valid JSON: {e}"),
    })?;
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return Err(ProtocolError {
            code: "bad_message",
            message: "a message must be a JSON object with a string \"type\"".into(),
        });
    };
    const KNOWN: [&str; 10] = [
        "hello",
        "done",
        "repeat",
        "text",
        "typing",
        "playback_ended",
        "ping",
        "offer",
        "candidate",
        "bye",
    ];
    if !KNOWN.contains(&kind.as_str()) {
        return Err(ProtocolError {
            code: "unknown_type",
            message: format!("unknown message type {kind:?}; known: {}", KNOWN.join(", ")),
        });
    }
    serde_json::from_value(value).map_err(|e| ProtocolError {
        code: "bad_message",
        message: format!("bad {kind:?} message: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_parses_with_defaults() {
        let m = parse_client_message(
            r#"{"type":"hello","protocol":1,"audio":{"encoding":"pcm_s16le","sample_rate":16000,"channels":1}}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                protocol: 1,
                audio: AudioFormat {
                    encoding: AudioEncoding::PcmS16le,
                    sample_rate: 16_000,
                    channels: 1
                },
                speech: None
            }
        );
        let m = parse_client_message(
            r#"{"type":"hello","protocol":1,"audio":{"encoding":"webrtc"},"speech":null}"#,
        )
        .unwrap();
        assert!(
            matches!(
                m,
                ClientMessage::Hello {
                    speech: Some(None),
                    ..
                }
            ),
            "{m:?}"
        );
    }

    #[test]
    fn errors_are_told_apart() {
        assert_eq!(parse_client_message("{nope").unwrap_err().code, "bad_json");
        assert_eq!(parse_client_message("[1]").unwrap_err().code, "bad_message");
        assert_eq!(
            parse_client_message(r#"{"type":"dance"}"#)
                .unwrap_err()
                .code,
            "unknown_type"
        );
        let e = parse_client_message(r#"{"type":"hello","protocol":1}"#).unwrap_err();
        assert_eq!(e.code, "bad_message");
        assert!(e.message.contains("audio"), "{}", e.message);
    }

    #[test]
    fn transcript_serializes_final_keyword() {
        let s = serde_json::to_string(&ServerMessage::Transcript {
            text: "hi".into(),
            stable: None,
            is_final: true,
            utterance: 0,
            start_s: 0.0,
            end_s: 1.0,
        })
        .unwrap();
        assert!(
            s.contains(r#""type":"transcript""#) && s.contains(r#""final":true"#),
            "{s}"
        );
    }
}
