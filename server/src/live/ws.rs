//! The interview WebSocket: the `hello` handshake, then binary audio and JSON control messages
//! in, JSON events and question audio out, with keep-alive pings and an idle timeout. The
//! socket side is generic over `Sink`/`Stream` so tests can drive it with channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::protocol::{
    AudioEncoding, AudioFormat, ClientMessage, PROTOCOL_VERSION, ServerMessage, SpeechFormat,
    parse_client_message,
};
use super::session::{Inbound, OUTBOUND_CAPACITY, Outbound};
use super::{AttachError, LiveShared};
use crate::platform::attempts::{self, client_ip, link_subject};
use crate::platform::error::{ApiError, StoreError};
use crate::platform::store::{AttemptScope, Interview as StoredInterview, InterviewStatus};

/// How long a client has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive ping period.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Text messages a client may send in one second; more is a flood and closes the socket.
/// (Audio frames are paced by their own checks; a person typing sends a few a second.)
pub const MAX_TEXT_PER_SECOND: u32 = 100;

/// Counts text messages per one-second window of the reader's own time.
///
/// The reader hands each message to the session and waits when the session is busy, so a
/// loaded server would read a flood no faster than it can handle it and never see one in wall
/// time. The time spent waiting on the session is therefore left out of the window
/// ([`exclude`](Self::exclude)): the rate counted is the one the client's queued messages come in
/// at, not the one the session drains them at. A window still ends after
/// [`FLOOD_WINDOW_WALL_CAP`] of wall time, so a slow session cannot stretch it until a client
/// sending a few messages a second reads as a flood.
#[derive(Debug)]
struct FloodGuard {
    window_start: tokio::time::Instant,
    wall_start: tokio::time::Instant,
    count: u32,
}

/// The most wall time one flood window spans, waits on the session included.
const FLOOD_WINDOW_WALL_CAP: Duration = Duration::from_secs(10);

impl FloodGuard {
    fn new() -> Self {
        FloodGuard::starting_at(tokio::time::Instant::now())
    }

    fn starting_at(now: tokio::time::Instant) -> Self {
        FloodGuard {
            window_start: now,
            wall_start: now,
            count: 0,
        }
    }

    /// Counts one message; false once the window holds more than the limit.
    fn allow(&mut self) -> bool {
        self.allow_at(tokio::time::Instant::now())
    }

    fn allow_at(&mut self, now: tokio::time::Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1)
            || now.saturating_duration_since(self.wall_start) >= FLOOD_WINDOW_WALL_CAP
        {
            self.window_start = now;
            self.wall_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= MAX_TEXT_PER_SECOND
    }

    /// Leaves `waited` (time the reader spent waiting on the session) out of the window.
    fn exclude(&mut self, waited: Duration) {
        self.window_start += waited;
    }

    /// Hands `message` to the session, leaving the time spent waiting on it out of the window.
    async fn forward(
        &mut self,
        inbound: &mpsc::Sender<Inbound>,
        message: Inbound,
    ) -> Result<(), mpsc::error::SendError<Inbound>> {
        let waiting = tokio::time::Instant::now();
        let sent = inbound.send(message).await;
        self.exclude(waiting.elapsed());
        sent
    }
}

/// How long a socket closed for a flood keeps reading (and discarding) what the client still
/// sends, so the close does not reset the connection under the error event on its way.
const FLOOD_LINGER: Duration = Duration::from_secs(1);

/// Reads and discards frames until the client closes or [`FLOOD_LINGER`] passes. Dropping a
/// socket with unread data makes the kernel send a reset, and a reset makes the client's side
/// throw away what it had received but not yet read: the `message_flood` error among it.
async fn linger<St, E>(stream: &mut St)
where
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let _ = tokio::time::timeout(FLOOD_LINGER, async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The error a flooding client gets before its socket closes.
fn flood_error() -> ServerMessage {
    ServerMessage::error(
        "message_flood",
        format!("more than {MAX_TEXT_PER_SECOND} messages in a second; the connection is closed"),
        true,
    )
}

/// `GET /v1/interview-links/{token}/live`: checks the link, then upgrades to the interview
/// WebSocket.
pub async fn live_socket(
    State(live): State<Arc<LiveShared>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ip = client_ip(
        &headers,
        peer.map(|Extension(ConnectInfo(addr))| addr),
        live.platform.config.trust_forwarded_for,
    );
    let client = link_subject(ip.as_deref());
    match check_link(&live, &token, &client).await {
        Err(e) => e.into_response(),
        Ok(interview) => match upgrade {
            Err(rejection) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "websocket_required",
                format!("this URL speaks the interview WebSocket protocol: {rejection}"),
            )
            .into_response(),
            Ok(upgrade) => {
                if let Err(e) = admit_interview(&live, &interview) {
                    return e.into_response();
                }
                let permit = match live.admit_socket(&client) {
                    Ok(permit) => permit,
                    Err(e) => return e.into_response(),
                };
                // Oversized frames get an error event, not a dropped connection: accept up to
                // four times the limit at the protocol level and check the size ourselves.
                let limit = live.settings.max_frame_bytes;
                upgrade
                    .max_message_size(limit * 4)
                    .max_frame_size(limit * 4)
                    .on_upgrade(move |socket| async move {
                        serve_socket(live, interview, token, socket).await;
                        drop(permit);
                    })
            }
        },
    }
}

/// Admission control: an interview not running here is taken only while this instance is
/// under its capacity. The refusal is a 503 before the upgrade, so a balancer can try another
/// instance (nginx: `proxy_next_upstream ... http_503`) and a client can retry.
fn admit_interview(live: &LiveShared, interview: &StoredInterview) -> Result<(), ApiError> {
    if live.runs(&interview.id) || live.session_count() < live.settings.max_sessions {
        return Ok(());
    }
    live.metrics.inc_interviews_refused();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "at_capacity",
        format!(
            "this server is running as many live interviews as it can ({}); try again in a \
             moment (another server may take it)",
            live.settings.max_sessions
        ),
    )
    .with_retry_after(5))
}

/// The interview behind a live link; unknown and expired links count against the client's
/// hourly allowance of invalid links.
async fn check_link(
    live: &LiveShared,
    token: &str,
    subject: &str,
) -> Result<StoredInterview, ApiError> {
    if live.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is restarting; try again in a moment",
        )
        .with_retry_after(5));
    }
    let platform = &live.platform;
    attempts::check(platform, AttemptScope::Link, subject).await?;
    if token.len() > 256 {
        attempts::failed(platform, AttemptScope::Link, subject).await;
        return Err(ApiError::not_found("interview link"));
    }
    let interview = match platform
        .store
        .get_interview_by_token(token, platform.now())
        .await
    {
        Ok(interview) => interview,
        Err(StoreError::Internal(e)) => return Err(ApiError::internal(e)),
        Err(e) => {
            attempts::failed(platform, AttemptScope::Link, subject).await;
            return Err(e.into());
        }
    };
    if interview.status == InterviewStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "interview_completed",
            "this interview is already completed",
        ));
    }
    Ok(interview)
}

/// Checks a `hello`'s audio format; the error message says what is accepted.
pub fn check_audio_format(audio: &AudioFormat) -> Result<(), String> {
    if !(1..=2).contains(&audio.channels) {
        return Err(format!("channels must be 1 or 2, not {}", audio.channels));
    }
    match audio.encoding {
        AudioEncoding::PcmS16le => nextmark_engine::audio::check_rate(audio.sample_rate)
            .map_err(|e| format!("{e} (pcm_s16le accepts 8000 to 96000 Hz)")),
        AudioEncoding::Opus | AudioEncoding::Webrtc => Ok(()),
    }
}

/// Serves one interview connection over any WebSocket-like transport.
pub async fn serve_socket<S, E>(
    live: Arc<LiveShared>,
    interview: StoredInterview,
    token: String,
    socket: S,
) where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Send + 'static,
    E: std::fmt::Display,
{
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    // The writer owns the sink: events, question audio and keep-alive pings.
    let writer = tokio::spawn(async move {
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.tick().await;
        loop {
            tokio::select! {
                next = out_rx.recv() => {
                    let message = match next {
                        Some(Outbound::Event(event)) => match serde_json::to_string(&event) {
                            Ok(text) => Message::Text(text.into()),
                            Err(_) => continue,
                        },
                        Some(Outbound::Audio(bytes)) => Message::Binary(bytes),
                        Some(Outbound::Close) | None => {
                            let _ = sink.send(Message::Close(None)).await;
                            break;
                        }
                    };
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                _ = pings.tick() => {
                    if sink.send(Message::Ping(Bytes::from_static(b"nm"))).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let idle = Duration::from_secs(live.settings.idle_timeout_secs);
    let max_frame = live.settings.max_frame_bytes;
    let say = |event: ServerMessage| {
        let tx = out_tx.clone();
        async move {
            let _ = tx.send(Outbound::Event(event)).await;
        }
    };

    // Handshake: wait for a valid hello; other frames get an error event and are ignored.
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut flood = FloodGuard::new();
    let (audio, speech): (AudioFormat, Option<Option<SpeechFormat>>) = loop {
        let frame = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                say(ServerMessage::error(
                    "hello_timeout",
                    format!("send hello within {} s", HELLO_TIMEOUT.as_secs()),
                    true,
                ))
                .await;
                let _ = out_tx.send(Outbound::Close).await;
                drop(out_tx);
                let _ = writer.await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) => {
                drop(out_tx);
                let _ = writer.await;
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if matches!(frame, Message::Text(_) | Message::Binary(_)) && !flood.allow() {
            live.metrics.inc_protocol_errors("message_flood");
            say(flood_error()).await;
            let _ = out_tx.send(Outbound::Close).await;
            drop(out_tx);
            let _ = writer.await;
            linger(&mut stream).await;
            return;
        }
        match frame {
            Message::Text(text) => match parse_client_message(&text) {
                Ok(ClientMessage::Hello {
                    protocol,
                    audio,
                    speech,
                }) => {
                    if protocol != PROTOCOL_VERSION {
                        live.metrics.inc_protocol_errors("unsupported_protocol");
                        say(ServerMessage::error(
                            "unsupported_protocol",
                            format!(
                                "protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}"
                            ),
                            true,
                        ))
                        .await;
                        let _ = out_tx.send(Outbound::Close).await;
                        drop(out_tx);
                        let _ = writer.await;
                        return;
                    }
                    if let Err(message) = check_audio_format(&audio) {
                        live.metrics.inc_protocol_errors("bad_audio_format");
                        say(ServerMessage::error("bad_audio_format", message, false)).await;
                        continue;
                    }
                    if let Some(Some(s)) = speech
                        && nextmark_engine::audio::check_rate(s.sample_rate).is_err()
                    {
                        say(ServerMessage::error(
                            "bad_audio_format",
                            format!(
                                "speech.sample_rate {} is not in 8000..=96000",
                                s.sample_rate
                            ),
                            false,
                        ))
                        .await;
                        continue;
                    }
                    break (audio, speech);
                }
                Ok(ClientMessage::Ping { nonce }) => say(ServerMessage::Pong { nonce }).await,
                Ok(_) => {
                    live.metrics.inc_protocol_errors("hello_required");
                    say(ServerMessage::error(
                        "hello_required",
                        "the first message must be hello",
                        false,
                    ))
                    .await;
                }
                Err(e) => {
                    live.metrics.inc_protocol_errors(e.code);
                    say(ServerMessage::error(e.code, e.message, false)).await;
                }
            },
            Message::Binary(_) => {
                live.metrics.inc_protocol_errors("hello_required");
                say(ServerMessage::error(
                    "hello_required",
                    "audio arrived before hello; send hello first",
                    false,
                ))
                .await;
            }
            Message::Close(_) => {
                drop(out_tx);
                let _ = writer.await;
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    };

    let (conn, inbound) = match live
        .attach(&interview, &token, out_tx.clone(), audio, speech)
        .await
    {
        Ok(joined) => joined,
        Err(e) => {
            let (code, message) = match e {
                AttachError::Busy => (
                    "server_busy",
                    "too many interviews right now; try again in a few minutes".to_string(),
                ),
                AttachError::ShuttingDown => (
                    "shutting_down",
                    "the server is restarting; try again in a moment".to_string(),
                ),
                AttachError::Gone => ("session_ended", "the interview session ended".to_string()),
                AttachError::LiveElsewhere { retry_after_secs } => (
                    "live_elsewhere",
                    format!(
                        "this interview is still open on another connection; close it, or \
                         reconnect in {retry_after_secs} s"
                    ),
                ),
                AttachError::Internal(e) => {
                    tracing::error!(error = format!("{e:#}"), "attaching a connection");
                    ("internal", "the interview could not be loaded".to_string())
                }
            };
            say(ServerMessage::error(code, message, true)).await;
            let _ = out_tx.send(Outbound::Close).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };

    // Reader: forward frames to the session until the socket closes or goes quiet.
    let mut on_purpose = false;
    let mut flooded = false;
    loop {
        let frame = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                tracing::info!(conn, "connection idle; treating it as dropped");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(conn, error = %e, "socket read failed");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let forwarded = match frame {
            Message::Binary(bytes) => {
                if bytes.len() > max_frame {
                    live.metrics.inc_protocol_errors("frame_too_large");
                    say(ServerMessage::error(
                        "frame_too_large",
                        format!(
                            "an audio frame of {} bytes exceeds the limit of {max_frame}; send frames of 20–500 ms",
                            bytes.len()
                        ),
                        false,
                    ))
                    .await;
                    continue;
                }
                flood
                    .forward(&inbound, Inbound::Audio { conn, bytes })
                    .await
            }
            Message::Text(text) => {
                if !flood.allow() {
                    live.metrics.inc_protocol_errors("message_flood");
                    say(flood_error()).await;
                    let _ = out_tx.send(Outbound::Close).await;
                    flooded = true;
                    break;
                }
                if text.len() > max_frame {
                    live.metrics.inc_protocol_errors("frame_too_large");
                    say(ServerMessage::error(
                        "frame_too_large",
                        format!(
                            "a text frame of {} bytes exceeds the limit of {max_frame}",
                            text.len()
                        ),
                        false,
                    ))
                    .await;
                    continue;
                }
                match parse_client_message(&text) {
                    Ok(ClientMessage::Bye) => {
                        on_purpose = true;
                        break;
                    }
                    Ok(message) => {
                        flood
                            .forward(&inbound, Inbound::Control { conn, message })
                            .await
                    }
                    Err(e) => {
                        live.metrics.inc_protocol_errors(e.code);
                        say(ServerMessage::error(e.code, e.message, false)).await;
                        continue;
                    }
                }
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if forwarded.is_err() {
            // The session ended (completed); the writer closes the socket.
            break;
        }
    }
    let _ = inbound.send(Inbound::Detached { conn, on_purpose }).await;
    drop(out_tx);
    drop(inbound);
    // The writer ends when the session drops its sender or asks to close.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    if flooded {
        linger(&mut stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Sends `count` messages `every_ms` apart, the reader waiting `waited_ms` on the session
    /// after each; the index of the first message refused as a flood, if any.
    fn first_refused(count: u64, every_ms: u64, waited_ms: u64) -> Option<u64> {
        let start = Instant::now();
        let mut guard = FloodGuard::starting_at(start);
        (0..count).find(|n| {
            let refused = !guard.allow_at(start + Duration::from_millis(n * every_ms));
            guard.exclude(Duration::from_millis(waited_ms));
            refused
        })
    }

    #[test]
    fn more_than_the_limit_in_a_second_is_a_flood() {
        let limit = u64::from(MAX_TEXT_PER_SECOND);
        assert_eq!(first_refused(limit + 1, 5, 0), Some(limit));
    }

    #[test]
    fn a_steady_client_under_the_limit_is_never_a_flood() {
        // 50 messages a second for ten seconds.
        assert_eq!(first_refused(500, 20, 0), None);
    }

    #[test]
    fn time_spent_waiting_on_the_session_does_not_dilute_a_flood() {
        // A busy session takes 19 of every 20 ms: in wall time the reader sees 50 messages a
        // second, but the client had them all queued, so it is a flood…
        let limit = u64::from(MAX_TEXT_PER_SECOND);
        assert_eq!(first_refused(limit + 1, 20, 19), Some(limit));
        // …which counting wall time alone would miss.
        assert_eq!(first_refused(limit + 1, 20, 0), None);
    }

    #[test]
    fn a_session_that_is_nearly_always_busy_does_not_make_a_slow_client_a_flood() {
        // Five messages a second while the reader waits 199 ms of every 200 on the session:
        // in the reader's own time that is a thousand a second, but the window ends after
        // ten seconds of wall time, which hold only 50 of them.
        assert_eq!(first_refused(300, 200, 199), None);
    }
}
