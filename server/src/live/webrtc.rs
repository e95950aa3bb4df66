//! WebRTC transport: the browser's Opus microphone track in, the interviewer's voice out.
//!
//! [`WebRtcPeer`] is the server side of one browser call, built on webrtc-rs 0.21. Signalling
//! travels elsewhere (the session's WebSocket); this module only turns an SDP offer into an
//! answer, trades ICE candidates as the browser's `RTCIceCandidateInit` JSON, and moves audio.
//!
//! **Inbound.** RTP packets from the browser's microphone track go through a [`JitterBuffer`]
//! (reorders by sequence number, drops duplicates and late packets, turns gaps into
//! concealment), are decoded by libopus to mono f32 at 48 kHz (lost packets are rebuilt from the
//! next packet's in-band FEC data when it is there, else by Opus packet-loss concealment), and
//! are delivered one decoded packet per message on the session's bounded channel. The RTP
//! reader never waits for the session: when the channel is full the frame is dropped, counted,
//! and logged (once at the first drop, then every [`DROP_LOG_EVERY`] drops); when the channel
//! is closed the reader keeps draining the track without decoding.
//!
//! **Outbound.** [`WebRtcPeer::play`] resamples speech to 48 kHz and queues it; a task paced
//! by a 20 ms tokio interval encodes one mono Opus frame per tick and writes it to a
//! `TrackLocalStaticSample`. Nothing is written before the connection is `Connected`. While
//! no speech is queued the task sends Opus-encoded *silence* frames, so the browser sees one
//! continuous stream with no timestamp jumps (a few bytes per packet).
//!
//! **Lifetime.** Every task the peer starts is tracked and stops on [`WebRtcPeer::close`] (or
//! when the peer is dropped, through its cancellation token).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use audioadapter_buffers::direct::InterleavedSlice;
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rubato::{Fft, FixedSync, Resampler};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceConnectionState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

/// Sample rate of all audio crossing this module (Opus' RTP clock and decoder rate).
pub const WEBRTC_RATE: u32 = 48_000;

/// Parses a browser's SDP offer as the call will (without a call): the signalling check the
/// fuzzer drives.
pub fn parse_offer(sdp: &str) -> anyhow::Result<RTCSessionDescription> {
    RTCSessionDescription::offer(sdp.to_owned()).context("parsing the browser's SDP offer")
}

/// Parses a remote candidate (`RTCIceCandidateInit` JSON) and its candidate line, so a bad
/// one is refused with a clear error before it reaches the ICE agent. An empty line (the
/// end-of-candidates marker) is valid.
pub fn parse_candidate(candidate: serde_json::Value) -> anyhow::Result<RTCIceCandidateInit> {
    let init: RTCIceCandidateInit = serde_json::from_value(candidate)
        .context("parsing a remote ICE candidate (RTCIceCandidateInit JSON)")?;
    let line = init.candidate.trim();
    let line = line.strip_prefix("candidate:").unwrap_or(line);
    if !line.is_empty() {
        rtc::ice::candidate::unmarshal_candidate(line)
            .with_context(|| format!("parsing ICE candidate {line:?}"))?;
    }
    Ok(init)
}
/// Samples in one 20 ms frame at [`WEBRTC_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one outbound frame.
const FRAME: Duration = Duration::from_millis(20);
/// Largest Opus frame (120 ms at 48 kHz): the decode buffer size.
const OPUS_MAX_SAMPLES: usize = 5_760;
/// Room for one encoded Opus frame (RFC 7587 recommends buffers of at least 1275 bytes).
const OPUS_MAX_PACKET: usize = 1_500;
/// Longest speech [`WebRtcPeer::play`] will hold queued, in seconds: a guard, not a budget.
const MAX_QUEUED_SECONDS: f64 = 600.0;
/// Internal event queue between the webrtc driver's callbacks and the session's channel.
/// Candidates and state changes are a few dozen per call; overflowing it means the session
/// stopped reading events for a long time.
const EVENT_QUEUE_CAPACITY: usize = 64;
/// A dropped-frame warning is logged at the first drop and then once per this many drops.
pub const DROP_LOG_EVERY: u64 = 500;
/// How long [`WebRtcPeer::close`] waits for the peer's tasks before giving up on them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server side of a WebRTC call binds and reaches the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcConfig {
    /// STUN/TURN servers for deployments behind NAT; empty on loopback and in tests.
    pub ice_servers: Vec<IceServer>,
    /// Address the UDP socket binds: `127.0.0.1` in tests, `0.0.0.0` in deployment (which
    /// advertises every real interface and skips loopback).
    pub bind_ip: IpAddr,
    /// Inclusive UDP port range for firewalls that open only some ports; `None` lets the
    /// OS pick an ephemeral port.
    pub udp_port_range: Option<(u16, u16)>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            ice_servers: Vec::new(),
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            udp_port_range: None,
        }
    }
}

impl WebRtcConfig {
    /// Loopback only, ephemeral port, no ICE servers: what tests use.
    pub fn loopback() -> Self {
        WebRtcConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..WebRtcConfig::default()
        }
    }
}

/// One STUN or TURN server, as a browser's `RTCIceServer` describes it.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password; never printed by `Debug`.
    #[serde(default)]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl From<&IceServer> for RTCIceServer {
    fn from(server: &IceServer) -> Self {
        RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone().unwrap_or_default(),
            credential: server.credential.clone().unwrap_or_default(),
        }
    }
}

/// What the peer tells the session, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate as `RTCIceCandidateInit` JSON, ready for the browser's
    /// `addIceCandidate` (send it after the answer).
    Candidate(serde_json::Value),
    /// ICE and DTLS are up: audio flows both ways.
    Connected,
    /// The connection was lost (it may still recover to `Connected`) or the browser closed it.
    Disconnected,
    /// The connection failed for good; the call is over.
    Failed(String),
}

// ---------------------------------------------------------------------------------------------
// Jitter buffer
// ---------------------------------------------------------------------------------------------

/// Tuning of a [`JitterBuffer`]; the defaults suit 20 ms Opus packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Packets held after a hole before it is declared lost: the reordering tolerance
    /// (3 packets = 60 ms). In-order packets are never held.
    pub depth: usize,
    /// Holes up to this many packets are concealed packet by packet; larger ones are a
    /// discontinuity.
    pub max_gap: usize,
    /// Concealment frames emitted at a discontinuity before jumping to the new position.
    pub max_conceal: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            depth: 3,
            max_gap: 10,
            max_conceal: 3,
        }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered (and possibly already released to [`JitterBuffer::pop`]).
    Accepted,
    /// This sequence number was already received: dropped.
    Duplicate,
    /// Its playout slot has passed (played, or concealed as lost): dropped.
    Late,
    /// The stream restarted far behind the playout point: the buffer reset to follow it.
    Restarted,
}

/// One 20 ms-ish slot of playout, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Packet(Bytes),
    /// The packet for this slot is lost. `fec` is the following packet when it is at hand,
    /// so its in-band FEC data can rebuild this slot; otherwise conceal.
    Lost {
        /// The next packet in sequence, when buffered.
        fec: Option<Bytes>,
    },
}

/// Counters kept by a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets released for decoding.
    pub played: u64,
    /// Slots released as [`Playout::Lost`] (including discontinuity concealment).
    pub concealed: u64,
    /// Lost slots that came with the next packet for FEC.
    pub fec_available: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late packets dropped.
    pub late: u64,
    /// Discontinuities (large gaps skipped, restarts followed).
    pub resyncs: u64,
}

/// Offset added to the first sequence number so extended sequence numbers never underflow.
const SEQ_BASE: u64 = 1 << 32;
/// Packets older than this (relative to the playout point) are not tracked as received.
const HISTORY_BITS: u64 = 64;

/// Reorders RTP packets by sequence number (with `u16` wrap-around) and turns gaps into
/// explicit concealment slots. Pure: no clock, no I/O; the caller pushes packets as they
/// arrive and pops playout slots until `None`.
///
/// A packet that is next in sequence is released at once. When one is missing, later
/// packets are held until [`JitterConfig::depth`] of them are waiting; then the missing ones
/// are declared lost. A hole larger than [`JitterConfig::max_gap`] is a discontinuity:
/// [`JitterConfig::max_conceal`] concealment slots, then playout resumes at the first packet
/// after the hole. Memory is bounded by `depth` packets. The first packet pushed fixes the
/// playout start: anything older arriving afterwards counts as late.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Packets not yet released, by extended sequence number.
    pending: BTreeMap<u64, Bytes>,
    /// Decided slots waiting for `pop`.
    ready: VecDeque<Playout>,
    /// Extended sequence number of the next slot to release; `None` before the first packet.
    next: Option<u64>,
    /// Bit `i` set: slot `next - 1 - i` was a received packet (tells duplicates from late).
    history: u64,
    /// Consecutive packets far behind the playout point (a sender restart if it persists).
    stale_streak: usize,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new(JitterConfig::default())
    }
}

impl JitterBuffer {
    /// An empty buffer. `depth` and `max_gap` below 1 are raised to 1.
    pub fn new(config: JitterConfig) -> Self {
        JitterBuffer {
            config: JitterConfig {
                depth: config.depth.max(1),
                max_gap: config.max_gap.max(1),
                max_conceal: config.max_conceal,
            },
            pending: BTreeMap::new(),
            ready: VecDeque::new(),
            next: None,
            history: 0,
            stale_streak: 0,
            stats: JitterStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Forgets every packet and the playout position (counters are kept).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.ready.clear();
        self.next = None;
        self.history = 0;
        self.stale_streak = 0;
    }

    /// Adds one packet's payload under its RTP sequence number.
    pub fn push(&mut self, seq: u16, payload: Bytes) -> PushOutcome {
        self.stats.received += 1;
        let Some(next) = self.next else {
            let ext = SEQ_BASE + u64::from(seq);
            self.next = Some(ext);
            self.pending.insert(ext, payload);
            self.release(false);
            return PushOutcome::Accepted;
        };
        // Signed distance from the playout point, modulo 2^16: the nearest interpretation.
        let delta = i64::from(seq.wrapping_sub(next as u16) as i16);
        let ext = next.wrapping_add_signed(delta);
        if delta < 0 {
            let age = next - 1 - ext;
            if age < HISTORY_BITS && self.history & (1 << age) != 0 {
                self.stats.duplicates += 1;
                return PushOutcome::Duplicate;
            }
            if age >= HISTORY_BITS {
                self.stale_streak += 1;
                if self.stale_streak > self.config.depth {
                    // The sender jumped far back and stayed there: follow it.
                    self.stats.resyncs += 1;
                    self.reset();
                    self.stats.received -= 1;
                    self.push(seq, payload);
                    return PushOutcome::Restarted;
                }
            }
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        self.stale_streak = 0;
        if self.pending.contains_key(&ext) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.pending.insert(ext, payload);
        self.release(false);
        PushOutcome::Accepted
    }

    /// The next playout slot, if one is decided.
    pub fn pop(&mut self) -> Option<Playout> {
        self.ready.pop_front()
    }

    /// End of stream: releases everything still held, concealing the holes between.
    pub fn flush(&mut self) {
        self.release(true);
    }

    fn mark(&mut self, received: bool) {
        self.history = (self.history << 1) | u64::from(received);
        if let Some(next) = self.next.as_mut() {
            *next += 1;
        }
    }

    fn release(&mut self, force: bool) {
        while let Some(next) = self.next {
            if let Some(packet) = self.pending.remove(&next) {
                self.ready.push_back(Playout::Packet(packet));
                self.stats.played += 1;
                self.mark(true);
                continue;
            }
            let Some(first) = self.pending.keys().next().copied() else {
                return;
            };
            if !force && self.pending.len() < self.config.depth {
                return; // wait: the missing packet may still be on its way
            }
            let gap = first - next;
            if gap > self.config.max_gap as u64 {
                for _ in 0..self.config.max_conceal {
                    self.ready.push_back(Playout::Lost { fec: None });
                }
                self.stats.concealed += self.config.max_conceal as u64;
                self.stats.resyncs += 1;
                self.history = 0;
                self.next = Some(first);
            } else {
                for slot in next..first {
                    let fec = (slot + 1 == first)
                        .then(|| self.pending.get(&first).cloned())
                        .flatten();
                    if fec.is_some() {
                        self.stats.fec_available += 1;
                    }
                    self.ready.push_back(Playout::Lost { fec });
                    self.stats.concealed += 1;
                    self.mark(false);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Opus in and out
// ---------------------------------------------------------------------------------------------

/// Jitter buffer plus libopus decoder: RTP payloads in, mono 48 kHz frames out, one frame per
/// playout slot (lost slots rebuilt from FEC or concealed, so durations are preserved).
struct OpusReceiver {
    jitter: JitterBuffer,
    decoder: opus::Decoder,
    /// Decode buffer, reused.
    pcm: Vec<f32>,
    /// Samples in the last decoded packet: the length of concealment for a lost slot.
    frame_len: usize,
    /// Packets libopus refused (concealed instead).
    decode_errors: u64,
    /// Lost slots rebuilt from the next packet's FEC data.
    fec_used: u64,
}

impl OpusReceiver {
    fn new() -> anyhow::Result<Self> {
        let decoder = opus::Decoder::new(WEBRTC_RATE, opus::Channels::Mono)
            .context("creating the Opus decoder")?;
        Ok(OpusReceiver {
            jitter: JitterBuffer::default(),
            decoder,
            pcm: vec![0.0; OPUS_MAX_SAMPLES],
            frame_len: FRAME_SAMPLES,
            decode_errors: 0,
            fec_used: 0,
        })
    }

    /// Takes one RTP payload; appends every frame that became ready to `out`.
    fn push(&mut self, seq: u16, payload: Bytes, out: &mut Vec<Vec<f32>>) {
        if payload.is_empty() {
            return; // browsers send a few; decoding one would emit concealment noise
        }
        self.jitter.push(seq, payload);
        while let Some(slot) = self.jitter.pop() {
            out.push(self.decode(slot));
        }
    }

    fn decode(&mut self, slot: Playout) -> Vec<f32> {
        let frame_len = self.frame_len.min(OPUS_MAX_SAMPLES);
        let result = match &slot {
            Playout::Packet(data) => self.decoder.decode_float(data, &mut self.pcm, false),
            Playout::Lost { fec: Some(next) } => {
                self.fec_used += 1;
                self.decoder
                    .decode_float(next, &mut self.pcm[..frame_len], true)
            }
            Playout::Lost { fec: None } => {
                self.decoder
                    .decode_float(&[], &mut self.pcm[..frame_len], false)
            }
        };
        match result {
            Ok(n) => {
                if matches!(slot, Playout::Packet(_)) && n > 0 {
                    self.frame_len = n;
                }
                self.pcm[..n].to_vec()
            }
            Err(e) => {
                self.decode_errors += 1;
                if self.decode_errors == 1 {
                    tracing::warn!(error = %e, "Opus decode failed; concealing the frame");
                }
                match self
                    .decoder
                    .decode_float(&[], &mut self.pcm[..frame_len], false)
                {
                    Ok(n) => self.pcm[..n].to_vec(),
                    Err(_) => vec![0.0; frame_len],
                }
            }
        }
    }
}

/// Mono Opus encoder for 20 ms frames at 48 kHz, with in-band FEC on.
struct OpusSender {
    encoder: opus::Encoder,
    packet: Vec<u8>,
}

impl OpusSender {
    fn new() -> anyhow::Result<Self> {
        let mut encoder =
            opus::Encoder::new(WEBRTC_RATE, opus::Channels::Mono, opus::Application::Voip)
                .context("creating the Opus encoder")?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(32_000))
            .context("setting the Opus bitrate")?;
        encoder
            .set_inband_fec(true)
            .context("enabling Opus in-band FEC")?;
        encoder
            .set_packet_loss_perc(5)
            .context("setting the expected Opus packet loss")?;
        Ok(OpusSender {
            encoder,
            packet: vec![0; OPUS_MAX_PACKET],
        })
    }

    /// Encodes exactly one frame of [`FRAME_SAMPLES`] samples.
    fn encode(&mut self, frame: &[f32]) -> anyhow::Result<Bytes> {
        let n = self
            .encoder
            .encode_float(frame, &mut self.packet)
            .context("encoding an Opus frame")?;
        Ok(Bytes::copy_from_slice(&self.packet[..n]))
    }
}

/// Resamples a mono clip to 48 kHz (one shot: each clip is a separate utterance).
fn resample_to_48k(samples: &[f32], rate: u32) -> anyhow::Result<Vec<f32>> {
    if !(8_000..=192_000).contains(&rate) {
        bail!("unsupported sample rate {rate} Hz (8–192 kHz)");
    }
    if rate == WEBRTC_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        WEBRTC_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .with_context(|| format!("creating a {rate} Hz → 48 kHz resampler"))?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| anyhow!("wrapping the clip for resampling: {e}"))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .with_context(|| format!("resampling {} samples from {rate} Hz", samples.len()))?;
    Ok(out.take_data())
}

/// The Opus codec as this module offers and sends it: 48 kHz, two channels in the SDP (as
/// RFC 7587 requires), mono content.
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: WEBRTC_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A fresh outbound Opus track with a random SSRC.
fn opus_track(label: &str) -> anyhow::Result<(Arc<TrackLocalStaticSample>, u32)> {
    let ssrc = rand::random::<u32>();
    let track = MediaStreamTrack::new(
        format!("nextmark-{label}-stream"),
        format!("nextmark-{label}-audio"),
        format!("nextmark-{label}"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    );
    let track = TrackLocalStaticSample::new(Instant::now(), track)
        .context("creating the outbound Opus track")?;
    Ok((Arc::new(track), ssrc))
}

/// Builds a peer connection bound per `config`, with default codecs and interceptors.
async fn build_connection(
    config: &WebRtcConfig,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let addr = pick_udp_addr(config)?;
    let ice_servers: Vec<RTCIceServer> =
        config.ice_servers.iter().map(RTCIceServer::from).collect();
    let build = |mdns: MulticastDnsMode| {
        let handler = Arc::clone(&handler);
        let ice_servers = ice_servers.clone();
        async move {
            let mut media_engine = MediaEngine::default();
            media_engine
                .register_default_codecs()
                .context("registering the default codecs")?;
            let registry = register_default_interceptors(Registry::new(), &mut media_engine)
                .context("registering the default interceptors")?;
            let settings = SettingEngineBuilder::new()
                .with_multicast_dns_mode(mdns)
                .build();
            let pc = PeerConnectionBuilder::new()
                .with_configuration(
                    RTCConfigurationBuilder::new()
                        .with_ice_servers(ice_servers)
                        .build(),
                )
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings)
                .with_handler(handler)
                .with_udp_addrs(vec![addr])
                .build()
                .await
                .with_context(|| format!("building a peer connection on {addr}"))?;
            anyhow::Ok(Arc::new(pc) as Arc<dyn PeerConnection>)
        }
    };
    if config.bind_ip.is_loopback() {
        // Loopback calls never carry mDNS candidates; skip the multicast socket.
        return build(MulticastDnsMode::Disabled).await;
    }
    // Browsers may hide host addresses behind `<uuid>.local` names: resolve them when the
    // multicast socket can be opened, and carry on without when it cannot.
    match build(MulticastDnsMode::QueryOnly).await {
        Ok(pc) => Ok(pc),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "WebRTC with mDNS failed; retrying without");
            build(MulticastDnsMode::Disabled).await
        }
    }
}

/// The UDP address to bind: an ephemeral port, or a free one from the configured range
/// (probed by binding; another process may still take it before the peer binds it).
fn pick_udp_addr(config: &WebRtcConfig) -> anyhow::Result<SocketAddr> {
    let Some((low, high)) = config.udp_port_range else {
        return Ok(SocketAddr::new(config.bind_ip, 0));
    };
    if low == 0 || low > high {
        bail!("invalid WebRTC UDP port range {low}-{high}");
    }
    let span = u32::from(high - low) + 1;
    // Start at a random place so concurrent calls do not all race for the lowest port.
    let start = rand::random::<u32>() % span;
    for i in 0..span {
        let port = low + ((start + i) % span) as u16;
        let addr = SocketAddr::new(config.bind_ip, port);
        if UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no free UDP port in {low}-{high} on {}", config.bind_ip)
}

/// The payload type negotiated for `sender` (known once the answer is applied).
async fn payload_type(sender: &dyn RtpSender) -> anyhow::Result<u8> {
    let params = sender
        .get_parameters()
        .await
        .context("reading the audio sender's parameters")?;
    params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or_else(|| anyhow!("no codec negotiated for the outbound audio track"))
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

/// Reads one remote audio track until it ends or `cancel` fires, delivering decoded frames
/// to `audio_tx` without ever waiting on it (see the module docs for the overflow policy).
async fn run_receiver(
    track: Arc<dyn TrackRemote>,
    audio_tx: mpsc::Sender<Vec<f32>>,
    cancel: CancellationToken,
    who: &'static str,
) {
    let mut receiver = match OpusReceiver::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(who, error = %format!("{e:#}"), "cannot decode the remote audio track");
            return;
        }
    };
    let mut frames = Vec::new();
    let mut dropped = 0u64;
    let mut delivered = 0u64;
    let mut session_gone = false;
    let end = loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break "closed",
            event = track.poll() => event,
        };
        match event {
            None => break "track channel closed",
            Some(TrackRemoteEvent::OnEnded) => break "track ended",
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                if session_gone {
                    continue; // keep draining so the driver does not log overflows
                }
                receiver.push(packet.header.sequence_number, packet.payload, &mut frames);
                for frame in frames.drain(..) {
                    match audio_tx.try_send(frame) {
                        Ok(()) => delivered += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped += 1;
                            if dropped % DROP_LOG_EVERY == 1 {
                                tracing::warn!(
                                    who,
                                    dropped,
                                    "audio consumer is not keeping up; dropping decoded frames"
                                );
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            tracing::debug!(who, "audio consumer closed; draining the track");
                            session_gone = true;
                            break;
                        }
                    }
                }
                frames.clear();
            }
            Some(_) => {}
        }
    };
    let stats = receiver.jitter.stats();
    tracing::info!(
        who,
        end,
        delivered,
        dropped,
        received = stats.received,
        concealed = stats.concealed,
        fec_used = receiver.fec_used,
        duplicates = stats.duplicates,
        late = stats.late,
        resyncs = stats.resyncs,
        decode_errors = receiver.decode_errors,
        "remote audio track reader stopped"
    );
}

/// Speech waiting to be sent, shared by [`WebRtcPeer::play`] and the sender task.
#[derive(Debug, Default)]
struct PlaybackQueue {
    samples: Mutex<VecDeque<f32>>,
}

impl PlaybackQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<f32>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the next frame into `frame` (zero-padded); false when nothing is queued.
    fn next_frame(&self, frame: &mut [f32]) -> bool {
        let mut queue = self.lock();
        if queue.is_empty() {
            return false;
        }
        let n = queue.len().min(frame.len());
        for (dst, src) in frame.iter_mut().zip(queue.drain(..n)) {
            *dst = src;
        }
        frame[n..].fill(0.0);
        true
    }
}

/// Sends one Opus frame every 20 ms once connected: queued speech, else silence.
async fn run_sender(
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    queue: Arc<PlaybackQueue>,
    mut connected: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let mut encoder = match OpusSender::new() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot send the interviewer's voice");
            return;
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => return,
        r = connected.wait_for(|c| *c) => if r.is_err() { return },
    }
    let pt = match payload_type(&*sender).await {
        Ok(pt) => pt,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot send the interviewer's voice");
            return;
        }
    };
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    // Burst (the default) catches up after a stall, keeping the stream on the wall clock.
    let mut ticker = tokio::time::interval(FRAME);
    let (mut sent, mut write_errors) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if !*connected.borrow() {
            continue; // keep the queue until the connection comes back (or the call ends)
        }
        if !queue.next_frame(&mut frame) {
            frame.fill(0.0);
        }
        let data = match encoder.encode(&frame) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "dropping an outbound frame");
                continue;
            }
        };
        let sample = Sample {
            data,
            duration: FRAME,
            ..Sample::new(Instant::now())
        };
        match track.write_sample(ssrc, pt, &sample, &[]).await {
            Ok(()) => sent += 1,
            Err(e) => {
                write_errors += 1;
                if write_errors % DROP_LOG_EVERY == 1 {
                    tracing::warn!(error = %e, write_errors, "writing an outbound Opus frame failed");
                }
            }
        }
    }
    tracing::info!(sent, write_errors, "outbound audio sender stopped");
}

/// Forwards events from the driver's callbacks to the session, in order, without ever
/// making the driver wait.
async fn run_event_forwarder(
    mut rx: mpsc::Receiver<PeerEvent>,
    events_tx: mpsc::Sender<PeerEvent>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = rx.recv() => event,
        };
        let Some(event) = event else { return };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = events_tx.send(event) => if r.is_err() { return },
        }
    }
}

/// Callbacks from the webrtc driver. They run on the driver's loop, so none may block:
/// events go through a bounded internal queue with `try_send`.
struct CallHandler {
    who: &'static str,
    events: mpsc::Sender<PeerEvent>,
    connected: watch::Sender<bool>,
    audio_tx: mpsc::Sender<Vec<f32>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Only the first remote audio track is read (a call has one microphone).
    tracks_seen: AtomicU64,
}

impl CallHandler {
    fn emit(&self, event: PeerEvent) {
        if let Err(e) = self.events.try_send(event) {
            tracing::warn!(who = self.who, error = %e, "peer event queue full; event dropped");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for CallHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let json = event
            .candidate
            .to_json()
            .context("encoding a local ICE candidate")
            .and_then(|init| serde_json::to_value(init).context("serializing a candidate"));
        match json {
            Ok(json) => self.emit(PeerEvent::Candidate(json)),
            Err(e) => {
                tracing::warn!(who = self.who, error = %format!("{e:#}"), "skipping a local candidate")
            }
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        tracing::debug!(who = self.who, %state, "ICE connection state");
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(who = self.who, %state, "peer connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                self.connected.send_replace(true);
                self.emit(PeerEvent::Connected);
            }
            RTCPeerConnectionState::Disconnected => {
                self.connected.send_replace(false);
                self.emit(PeerEvent::Disconnected);
            }
            RTCPeerConnectionState::Failed => {
                self.connected.send_replace(false);
                self.emit(PeerEvent::Failed("ICE/DTLS connection failed".into()));
            }
            RTCPeerConnectionState::Closed => {
                self.connected.send_replace(false);
                if !self.cancel.is_cancelled() {
                    self.emit(PeerEvent::Disconnected);
                }
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            tracing::debug!(who = self.who, "ignoring a non-audio remote track");
            return;
        }
        if self.tracks_seen.fetch_add(1, Ordering::Relaxed) > 0 {
            tracing::warn!(who = self.who, "ignoring an extra remote audio track");
            return;
        }
        tracing::debug!(who = self.who, "remote audio track started");
        self.tasks.spawn(run_receiver(
            track,
            self.audio_tx.clone(),
            self.cancel.clone(),
            self.who,
        ));
    }
}

/// What both ends of a call own: the connection, its tasks and the outbound track.
struct CallCore {
    who: &'static str,
    pc: Arc<dyn PeerConnection>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    connected: watch::Receiver<bool>,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
}

impl CallCore {
    /// Builds the connection and adds the outbound Opus track; the event forwarder runs from
    /// here on.
    async fn new(
        who: &'static str,
        config: &WebRtcConfig,
        audio_tx: mpsc::Sender<Vec<f32>>,
        events_tx: mpsc::Sender<PeerEvent>,
    ) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (connected_tx, connected) = watch::channel(false);
        let (internal_tx, internal_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
        let handler = Arc::new(CallHandler {
            who,
            events: internal_tx,
            connected: connected_tx,
            audio_tx,
            cancel: cancel.clone(),
            tasks: tasks.clone(),
            tracks_seen: AtomicU64::new(0),
        });
        let pc = build_connection(config, handler).await?;
        tasks.spawn(run_event_forwarder(internal_rx, events_tx, cancel.clone()));
        let added = async {
            let (track, ssrc) = opus_track(who)?;
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .context("adding the outbound audio track")?;
            anyhow::Ok((track, ssrc, sender))
        }
        .await;
        match added {
            Ok((track, ssrc, sender)) => Ok(CallCore {
                who,
                pc,
                cancel,
                tasks,
                connected,
                track,
                sender,
                ssrc,
            }),
            Err(e) => {
                shutdown(who, &pc, &cancel, &tasks).await;
                Err(e)
            }
        }
    }

    async fn add_remote_candidate(&self, candidate: serde_json::Value) -> anyhow::Result<()> {
        let init = parse_candidate(candidate)?;
        if init.candidate.trim().is_empty() {
            return Ok(()); // the end-of-candidates marker
        }
        let text = init.candidate.clone();
        self.pc
            .add_ice_candidate(init)
            .await
            .with_context(|| format!("adding remote ICE candidate {text:?}"))
    }

    async fn shutdown(&self) {
        shutdown(self.who, &self.pc, &self.cancel, &self.tasks).await;
    }
}

/// Cancels the tasks, closes the connection and waits (bounded) for the tasks to end.
async fn shutdown(
    who: &'static str,
    pc: &Arc<dyn PeerConnection>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) {
    cancel.cancel();
    if let Err(e) = pc.close().await {
        tracing::warn!(who, error = %e, "closing the peer connection");
    }
    tasks.close();
    if tokio::time::timeout(CLOSE_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(who, tasks = tasks.len(), "peer tasks did not stop in time");
    }
}

/// The server side of one browser call: microphone audio in, the interviewer's voice out.
///
/// Dropping it without [`close`](Self::close) still stops its tasks (through the
/// cancellation token), but does not wait for them.
pub struct WebRtcPeer {
    core: CallCore,
    queue: Arc<PlaybackQueue>,
}

impl std::fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("connected", &*self.core.connected.borrow())
            .field("ssrc", &self.core.ssrc)
            .finish_non_exhaustive()
    }
}

impl WebRtcPeer {
    /// Answers a browser's offer. Decoded microphone audio (mono f32, 48 kHz, in order, losses
    /// concealed; one message per RTP packet, dropped when the channel is full) goes to
    /// `audio_tx`; ICE candidates and state changes go to `events_tx`, in order. Candidates
    /// may be queued on `events_tx` before this returns: send the answer first.
    pub async fn answer(
        config: &WebRtcConfig,
        offer_sdp: &str,
        audio_tx: mpsc::Sender<Vec<f32>>,
        events_tx: mpsc::Sender<PeerEvent>,
    ) -> anyhow::Result<(Self, String)> {
        let offer = parse_offer(offer_sdp)?;
        let core = CallCore::new("server", config, audio_tx, events_tx).await?;
        let negotiated = async {
            core.pc
                .set_remote_description(offer)
                .await
                .context("applying the browser's SDP offer")?;
            let answer = core
                .pc
                .create_answer(None)
                .await
                .context("creating the SDP answer")?;
            core.pc
                .set_local_description(answer)
                .await
                .context("applying the SDP answer locally")?;
            let local = core
                .pc
                .local_description()
                .await
                .ok_or_else(|| anyhow!("no local description after applying the answer"))?;
            anyhow::Ok(local.sdp)
        }
        .await;
        let sdp = match negotiated {
            Ok(sdp) => sdp,
            Err(e) => {
                core.shutdown().await;
                return Err(e);
            }
        };
        let queue = Arc::new(PlaybackQueue::default());
        core.tasks.spawn(run_sender(
            Arc::clone(&core.track),
            Arc::clone(&core.sender),
            core.ssrc,
            Arc::clone(&queue),
            core.connected.clone(),
            core.cancel.clone(),
        ));
        Ok((WebRtcPeer { core, queue }, sdp))
    }

    /// Adds one of the browser's ICE candidates (its `RTCIceCandidateInit` JSON). An empty
    /// candidate (end of candidates) is accepted and ignored.
    pub async fn add_remote_candidate(&self, candidate: serde_json::Value) -> anyhow::Result<()> {
        self.core.add_remote_candidate(candidate).await
    }

    /// The interviewer's voice: queues mono f32 PCM at `rate` (resampled to 48 kHz,
    /// Opus-encoded in 20 ms frames, paced in real time by a timer on the outbound track;
    /// nothing is sent before the call is connected). Returns the duration this call queued,
    /// in seconds.
    pub fn play(&self, samples: &[f32], rate: u32) -> anyhow::Result<f64> {
        if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
            bail!("speech sample {i} is not finite");
        }
        let resampled = resample_to_48k(samples, rate)?;
        let seconds = resampled.len() as f64 / f64::from(WEBRTC_RATE);
        let mut queue = self.queue.lock();
        let queued = queue.len() as f64 / f64::from(WEBRTC_RATE);
        if queued + seconds > MAX_QUEUED_SECONDS {
            bail!(
                "playback queue full: {queued:.1} s queued, {seconds:.1} s more exceeds {MAX_QUEUED_SECONDS} s"
            );
        }
        queue.extend(resampled.iter().map(|s| s.clamp(-1.0, 1.0)));
        Ok(seconds)
    }

    /// Barge-in: drops everything queued but not yet sent (at most the frame being encoded
    /// still goes out).
    pub fn stop_playback(&self) {
        self.queue.lock().clear();
    }

    /// True while queued speech is still being sent.
    pub fn is_playing(&self) -> bool {
        !self.queue.lock().is_empty()
    }

    /// True between the `Connected` event and a disconnection.
    pub fn is_connected(&self) -> bool {
        *self.core.connected.borrow()
    }

    /// Ends the call: stops every task of this peer and closes the connection.
    pub async fn close(self) {
        self.core.shutdown().await;
    }
}

impl Drop for WebRtcPeer {
    fn drop(&mut self) {
        self.core.cancel.cancel();
    }
}

pub mod test_client {
    //! A webrtc-rs peer that plays the browser's part of a call, for tests: it offers a
    //! sendrecv Opus track, sends PCM in real time and decodes what the server sends back.
    //! Signalling is left to the caller (channels in unit tests, the WebSocket end to end).

    use std::net::IpAddr;
    use std::time::Duration;

    use anyhow::{Context, anyhow, bail};
    use rtc::media::Sample;
    use tokio::sync::mpsc;
    use webrtc::peer_connection::RTCSessionDescription;

    use super::{
        CallCore, FRAME, FRAME_SAMPLES, OpusSender, PeerEvent, WebRtcConfig, payload_type,
    };

    /// Decoded frames the client keeps for the test: about 20 s of 20 ms frames.
    const AUDIO_CAPACITY: usize = 1_024;
    /// Local candidates the client keeps until the test forwards them.
    const CANDIDATE_CAPACITY: usize = 64;

    /// The browser stand-in. Dropping it stops its tasks; [`close`](Self::close) also waits.
    pub struct WebRtcTestClient {
        core: CallCore,
        candidates: Option<mpsc::Receiver<serde_json::Value>>,
        audio: Option<mpsc::Receiver<Vec<f32>>>,
    }

    impl std::fmt::Debug for WebRtcTestClient {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("WebRtcTestClient")
                .field("connected", &self.is_connected())
                .finish_non_exhaustive()
        }
    }

    impl WebRtcTestClient {
        /// Builds the client on `bind_ip` (port chosen by the OS) and returns it with its SDP
        /// offer (one sendrecv Opus audio section). Candidates trickle out afterwards.
        pub async fn new(bind_ip: IpAddr) -> anyhow::Result<(Self, String)> {
            let config = WebRtcConfig {
                bind_ip,
                ..WebRtcConfig::default()
            };
            let (audio_tx, audio_rx) = mpsc::channel(AUDIO_CAPACITY);
            let (events_tx, mut events_rx) = mpsc::channel(CANDIDATE_CAPACITY);
            let core = CallCore::new("test-client", &config, audio_tx, events_tx).await?;
            let (candidates_tx, candidates_rx) = mpsc::channel(CANDIDATE_CAPACITY);
            let cancel = core.cancel.clone();
            core.tasks.spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = cancel.cancelled() => return,
                        event = events_rx.recv() => event,
                    };
                    match event {
                        None => return,
                        Some(PeerEvent::Candidate(c)) => {
                            if candidates_tx.send(c).await.is_err() {
                                return;
                            }
                        }
                        Some(other) => tracing::debug!(?other, "test client event"),
                    }
                }
            });
            let offered = async {
                let offer = core
                    .pc
                    .create_offer(None)
                    .await
                    .context("creating the test client's offer")?;
                core.pc
                    .set_local_description(offer)
                    .await
                    .context("applying the test client's offer")?;
                let local = core
                    .pc
                    .local_description()
                    .await
                    .ok_or_else(|| anyhow!("no local description after applying the offer"))?;
                anyhow::Ok(local.sdp)
            }
            .await;
            match offered {
                Ok(sdp) => Ok((
                    WebRtcTestClient {
                        core,
                        candidates: Some(candidates_rx),
                        audio: Some(audio_rx),
                    },
                    sdp,
                )),
                Err(e) => {
                    core.shutdown().await;
                    Err(e)
                }
            }
        }

        /// Applies the server's SDP answer.
        pub async fn set_answer(&self, sdp: &str) -> anyhow::Result<()> {
            let answer = RTCSessionDescription::answer(sdp.to_owned())
                .context("parsing the server's SDP answer")?;
            self.core
                .pc
                .set_remote_description(answer)
                .await
                .context("applying the server's SDP answer")
        }

        /// Adds one of the server's candidates (`RTCIceCandidateInit` JSON).
        pub async fn add_remote_candidate(
            &self,
            candidate: serde_json::Value,
        ) -> anyhow::Result<()> {
            self.core.add_remote_candidate(candidate).await
        }

        /// The client's own candidates as `RTCIceCandidateInit` JSON, for the server (once).
        pub fn take_candidates(&mut self) -> Option<mpsc::Receiver<serde_json::Value>> {
            self.candidates.take()
        }

        /// Audio decoded from the server's track: mono f32 at 48 kHz, one message per RTP
        /// packet, in order, losses concealed (once). The server sends silence between
        /// utterances, so this flows continuously once connected.
        pub fn take_audio(&mut self) -> Option<mpsc::Receiver<Vec<f32>>> {
            self.audio.take()
        }

        /// True while the connection is up.
        pub fn is_connected(&self) -> bool {
            *self.core.connected.borrow()
        }

        /// Waits until the connection is up.
        pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
            let mut connected = self.core.connected.clone();
            tokio::time::timeout(timeout, connected.wait_for(|c| *c))
                .await
                .map_err(|_| anyhow!("test client not connected after {timeout:?}"))?
                .map_err(|_| anyhow!("test client shut down before connecting"))?;
            Ok(())
        }

        /// Sends mono 48 kHz PCM as 20 ms Opus frames paced in real time (the last frame is
        /// zero-padded), after waiting up to 10 s for the connection. Returns the frames sent.
        pub async fn send_pcm_realtime(&self, samples_48k_mono: &[f32]) -> anyhow::Result<usize> {
            self.wait_connected(Duration::from_secs(10)).await?;
            let pt = payload_type(&*self.core.sender).await?;
            let mut encoder = OpusSender::new()?;
            let mut ticker = tokio::time::interval(FRAME);
            let mut frame = vec![0.0f32; FRAME_SAMPLES];
            let mut sent = 0;
            for chunk in samples_48k_mono.chunks(FRAME_SAMPLES) {
                ticker.tick().await;
                if self.core.cancel.is_cancelled() {
                    bail!("test client closed while sending");
                }
                frame[..chunk.len()].copy_from_slice(chunk);
                frame[chunk.len()..].fill(0.0);
                let sample = Sample {
                    data: encoder.encode(&frame)?,
                    duration: FRAME,
                    ..Sample::new(std::time::Instant::now())
                };
                self.core
                    .track
                    .write_sample(self.core.ssrc, pt, &sample, &[])
                    .await
                    .with_context(|| format!("writing test frame {sent}"))?;
                sent += 1;
            }
            Ok(sent)
        }

        /// The client's task tracker, to check that close() stopped everything.
        #[cfg(test)]
        pub(super) fn core_tasks(&self) -> tokio_util::task::TaskTracker {
            self.core.tasks.clone()
        }

        /// Closes the connection and waits for the client's tasks.
        pub async fn close(self) {
            self.core.shutdown().await;
        }
    }

    impl Drop for WebRtcTestClient {
        fn drop(&mut self) {
            self.core.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_client::WebRtcTestClient;
    use super::*;

    fn b(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    /// Pushes `seqs` (payload = low byte of the sequence number) and pops everything ready.
    fn run(jb: &mut JitterBuffer, seqs: &[u16]) -> Vec<Playout> {
        let mut out = Vec::new();
        for &s in seqs {
            jb.push(s, b(s as u8));
            while let Some(p) = jb.pop() {
                out.push(p);
            }
        }
        out
    }

    fn packets(out: &[Playout]) -> Vec<Option<u8>> {
        out.iter()
            .map(|p| match p {
                Playout::Packet(d) => Some(d[0]),
                Playout::Lost { .. } => None,
            })
            .collect()
    }

    #[test]
    fn jitter_in_order_is_released_at_once() {
        let mut jb = JitterBuffer::default();
        for s in 100..110u16 {
            assert_eq!(jb.push(s, b(s as u8)), PushOutcome::Accepted);
            assert_eq!(jb.pop(), Some(Playout::Packet(b(s as u8))), "seq {s} held");
            assert_eq!(jb.pop(), None);
        }
        assert_eq!(jb.stats().played, 10);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn jitter_reorders() {
        let mut jb = JitterBuffer::default();
        let out = run(&mut jb, &[1, 3, 2, 4, 6, 5, 7]);
        assert_eq!(
            packets(&out),
            (1..=7).map(Some).collect::<Vec<_>>(),
            "reordered packets must come out in sequence"
        );
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn jitter_drops_duplicates() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[1, 2]);
        assert_eq!(jb.push(2, b(2)), PushOutcome::Duplicate, "already played");
        assert_eq!(jb.push(4, b(4)), PushOutcome::Accepted);
        assert_eq!(jb.push(4, b(4)), PushOutcome::Duplicate, "still buffered");
        let out = run(&mut jb, &[3, 5]);
        assert_eq!(packets(&out), vec![Some(3), Some(4), Some(5)]);
        assert_eq!(jb.stats().duplicates, 2);
    }

    #[test]
    fn jitter_conceals_losses_with_fec_from_the_next_packet() {
        let mut jb = JitterBuffer::default();
        // 3 and 4 lost: declared once `depth` (3) later packets are waiting.
        let out = run(&mut jb, &[1, 2, 5, 6]);
        assert_eq!(
            packets(&out),
            vec![Some(1), Some(2)],
            "must wait for reordering"
        );
        let out = run(&mut jb, &[7]);
        assert_eq!(
            out,
            vec![
                Playout::Lost { fec: None },
                Playout::Lost { fec: Some(b(5)) },
                Playout::Packet(b(5)),
                Playout::Packet(b(6)),
                Playout::Packet(b(7)),
            ]
        );
        let stats = jb.stats();
        assert_eq!(
            (stats.concealed, stats.fec_available, stats.played),
            (2, 1, 5)
        );
    }

    #[test]
    fn jitter_handles_sequence_wrap_around() {
        let mut jb = JitterBuffer::default();
        let out = run(&mut jb, &[65_533, 65_534, 0, 65_535, 1, 3, 4, 5]);
        let seqs: Vec<Option<u8>> = packets(&out);
        assert_eq!(
            seqs,
            vec![
                Some(253),
                Some(254),
                Some(255),
                Some(0),
                Some(1),
                None,
                Some(3),
                Some(4),
                Some(5)
            ]
        );
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn jitter_resyncs_after_a_large_gap() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[10, 11]);
        let out = run(&mut jb, &[500, 501, 502, 503]);
        let lost = out
            .iter()
            .filter(|p| matches!(p, Playout::Lost { .. }))
            .count();
        assert_eq!(
            lost,
            JitterConfig::default().max_conceal,
            "bounded concealment"
        );
        assert_eq!(
            packets(&out)[lost..],
            [Some(244), Some(245), Some(246), Some(247)],
            "playout resumes at the first packet after the gap"
        );
        assert_eq!(jb.stats().resyncs, 1);
        // A sender restart far behind is followed after a few packets, not dropped forever.
        let mut jb = JitterBuffer::default();
        run(&mut jb, &(1000..1100).collect::<Vec<_>>());
        let outcomes: Vec<_> = (10..15u16).map(|s| jb.push(s, b(s as u8))).collect();
        assert_eq!(outcomes[0], PushOutcome::Late);
        assert!(outcomes.contains(&PushOutcome::Restarted), "{outcomes:?}");
    }

    #[test]
    fn jitter_drops_late_packets() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[1, 2, 4, 5, 6]); // 3 declared lost
        assert_eq!(jb.push(3, b(3)), PushOutcome::Late);
        assert_eq!(jb.stats().late, 1);
        let out = run(&mut jb, &[7]);
        assert_eq!(
            packets(&out),
            vec![Some(7)],
            "a late packet is never played"
        );
    }

    #[test]
    fn jitter_flush_releases_held_packets() {
        let mut jb = JitterBuffer::default();
        run(&mut jb, &[1, 3]);
        jb.flush();
        let mut out = Vec::new();
        while let Some(p) = jb.pop() {
            out.push(p);
        }
        assert_eq!(
            out,
            vec![Playout::Lost { fec: Some(b(3)) }, Playout::Packet(b(3))]
        );
    }

    fn sine(rate: u32, freq: f32, amp: f32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    fn db(ratio: f32) -> f32 {
        20.0 * ratio.log10()
    }

    /// Share of the signal's energy at `freq` (Goertzel over 100 ms blocks): ~1 for a pure tone.
    fn tone_purity(x: &[f32], freq: f32) -> f32 {
        let n = 4_800;
        let (mut tone, mut total) = (0.0f64, 0.0f64);
        for block in x.chunks_exact(n) {
            let w = std::f64::consts::TAU * f64::from(freq) / f64::from(WEBRTC_RATE);
            let coeff = 2.0 * w.cos();
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &v in block {
                let s0 = f64::from(v) + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            tone += 2.0 * power / (n as f64 * n as f64);
            total += block.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
        }
        (tone / total.max(1e-12)) as f32
    }

    /// Samples belonging to 20 ms frames louder than -30 dBFS.
    fn loud(x: &[f32]) -> Vec<f32> {
        x.chunks(FRAME_SAMPLES)
            .filter(|f| rms(f) > 0.03)
            .flatten()
            .copied()
            .collect()
    }

    #[test]
    fn opus_receiver_keeps_duration_and_tone_through_loss_reorder_and_duplicates() {
        let tone = sine(WEBRTC_RATE, 440.0, 0.3, 1.0);
        let mut enc = OpusSender::new().expect("encoder");
        let packets: Vec<Bytes> = tone
            .chunks(FRAME_SAMPLES)
            .map(|f| enc.encode(f).expect("encode"))
            .collect();
        let mut order: Vec<u16> = (0..50).filter(|s| *s != 10 && *s != 11).collect();
        order.swap(20, 21);
        order.insert(30, 29);
        let mut rx = OpusReceiver::new().expect("decoder");
        let mut frames = Vec::new();
        for s in order {
            rx.push(
                s.wrapping_add(65_530),
                packets[s as usize].clone(),
                &mut frames,
            );
        }
        rx.jitter.flush();
        while let Some(slot) = rx.jitter.pop() {
            frames.push(rx.decode(slot));
        }
        let out: Vec<f32> = frames.concat();
        assert_eq!(
            out.len(),
            50 * FRAME_SAMPLES,
            "two lost frames must be concealed"
        );
        assert_eq!(rx.jitter.stats().concealed, 2);
        assert_eq!(rx.fec_used, 1);
        let body = &out[4_800..out.len() - 4_800];
        let purity = tone_purity(body, 440.0);
        let level = db(rms(body) / rms(&tone));
        assert!(purity > 0.9, "tone purity {purity}");
        assert!(level.abs() < 2.0, "level changed by {level} dB");
    }

    #[test]
    fn resampling_keeps_duration() {
        let out = resample_to_48k(&sine(24_000, 660.0, 0.3, 1.0), 24_000).expect("resample");
        assert!((out.len() as i64 - 48_000).abs() <= 2, "{}", out.len());
        assert!(resample_to_48k(&[0.0; 10], 1).is_err());
    }

    /// Exchanges candidates like the WebSocket would until both ends are connected.
    async fn connect(
        client: &mut WebRtcTestClient,
        server: &WebRtcPeer,
        events: &mut mpsc::Receiver<PeerEvent>,
    ) -> Duration {
        let start = Instant::now();
        let mut client_candidates = client.take_candidates().expect("candidates");
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut server_connected = false;
        while !(server_connected && client.is_connected()) {
            tokio::select! {
                _ = &mut deadline => panic!("no connection within 10 s"),
                Some(c) = client_candidates.recv() => {
                    server.add_remote_candidate(c).await.expect("server adds candidate");
                }
                Some(event) = events.recv() => match event {
                    PeerEvent::Candidate(c) => {
                        client.add_remote_candidate(c).await.expect("client adds candidate");
                    }
                    PeerEvent::Connected => server_connected = true,
                    other => panic!("unexpected {other:?}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        start.elapsed()
    }

    /// Collects audio until `want` samples arrived or nothing came for `quiet`.
    async fn collect(rx: &mut mpsc::Receiver<Vec<f32>>, want: usize, quiet: Duration) -> Vec<f32> {
        let mut out = Vec::new();
        while out.len() < want {
            match tokio::time::timeout(quiet, rx.recv()).await {
                Ok(Some(frame)) => out.extend(frame),
                _ => break,
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webrtc_loopback_call_carries_audio_both_ways() {
        let (mut client, offer) = WebRtcTestClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .await
            .expect("client");
        let (audio_tx, mut audio_rx) = mpsc::channel(256);
        let (events_tx, mut events) = mpsc::channel(64);
        let (server, answer) =
            WebRtcPeer::answer(&WebRtcConfig::loopback(), &offer, audio_tx, events_tx)
                .await
                .expect("answer");
        assert!(answer.contains("opus"), "answer lacks Opus:\n{answer}");
        client.set_answer(&answer).await.expect("set answer");
        let took = connect(&mut client, &server, &mut events).await;
        eprintln!("connected in {took:?}");

        // Browser → server: 3 s of 440 Hz at -13.5 dBFS RMS, paced in real time.
        let tone = sine(WEBRTC_RATE, 440.0, 0.3, 3.0);
        let (sent, received) = tokio::join!(
            client.send_pcm_realtime(&tone),
            collect(&mut audio_rx, tone.len(), Duration::from_millis(800)),
        );
        let sent = sent.expect("send");
        let seconds = received.len() as f64 / f64::from(WEBRTC_RATE);
        let body = &received[9_600..received.len().saturating_sub(9_600)];
        let purity = tone_purity(body, 440.0);
        let level = db(rms(body) / rms(&tone));
        eprintln!(
            "uplink: sent {sent} frames, received {seconds:.3} s, 440 Hz purity {purity:.4}, level {level:+.2} dB"
        );
        assert_eq!(sent, 150);
        assert!((seconds - 3.0).abs() < 0.1, "received {seconds} s of 3 s");
        assert!(purity > 0.95, "purity {purity}");
        assert!(level.abs() < 1.5, "level off by {level} dB");

        // Server → browser: 1.5 s of 660 Hz at 24 kHz through play().
        let mut downlink = client.take_audio().expect("client audio");
        while downlink.try_recv().is_ok() {} // silence frames before the speech
        let queued = server
            .play(&sine(24_000, 660.0, 0.3, 1.5), 24_000)
            .expect("play");
        assert!((queued - 1.5).abs() < 0.001, "queued {queued}");
        assert!(server.is_playing());
        let heard = collect(&mut downlink, 48_000 * 5 / 2, Duration::from_secs(1)).await;
        assert!(!server.is_playing(), "queue must be drained after 2.5 s");
        let voiced = loud(&heard);
        let seconds = voiced.len() as f64 / f64::from(WEBRTC_RATE);
        let body = &voiced[4_800..voiced.len().saturating_sub(4_800)];
        let purity = tone_purity(body, 660.0);
        let level = db(rms(body) / (0.3 / 2f32.sqrt()));
        eprintln!(
            "downlink: heard {:.3} s, tone {seconds:.3} s, 660 Hz purity {purity:.4}, level {level:+.2} dB",
            heard.len() as f64 / f64::from(WEBRTC_RATE)
        );
        assert!(
            (seconds - 1.5).abs() < 0.1,
            "tone lasted {seconds} s of 1.5 s"
        );
        assert!(purity > 0.95, "purity {purity}");
        assert!(level.abs() < 1.5, "level off by {level} dB");

        // Barge-in: 4 s queued, stopped after 0.5 s.
        server
            .play(&sine(WEBRTC_RATE, 660.0, 0.3, 4.0), WEBRTC_RATE)
            .expect("play");
        let early = collect(&mut downlink, 24_000, Duration::from_secs(1)).await;
        server.stop_playback();
        assert!(!server.is_playing());
        let late = collect(&mut downlink, 48_000, Duration::from_secs(1)).await;
        let after_stop = loud(&late).len() as f64 / f64::from(WEBRTC_RATE);
        eprintln!(
            "barge-in: {:.3} s of tone before stop, {after_stop:.3} s after",
            loud(&early).len() as f64 / f64::from(WEBRTC_RATE)
        );
        assert!(
            after_stop < 0.2,
            "{after_stop} s of speech after stop_playback"
        );

        // Every task of both peers ends within close().
        let (client_tasks, server_tasks) = (client.core_tasks(), server.core.tasks.clone());
        let closing = Instant::now();
        client.close().await;
        server.close().await;
        eprintln!("closed both peers in {:?}", closing.elapsed());
        assert!(
            client_tasks.is_empty(),
            "{} client tasks left",
            client_tasks.len()
        );
        assert!(
            server_tasks.is_empty(),
            "{} server tasks left",
            server_tasks.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webrtc_bad_offer_is_an_error() {
        // The last one parses but has no ICE credentials or DTLS fingerprint, so it fails
        // after the connection was built (which must then be torn down).
        let no_ice = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
                      a=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
        for bad in [
            "",
            "not an sdp",
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n",
            no_ice,
        ] {
            let (audio_tx, _audio_rx) = mpsc::channel(4);
            let (events_tx, _events) = mpsc::channel(4);
            let result =
                WebRtcPeer::answer(&WebRtcConfig::loopback(), bad, audio_tx, events_tx).await;
            let err = result.expect_err("a bad offer must fail");
            eprintln!("bad offer {bad:?}: {err:#}");
        }
    }

    #[test]
    fn webrtc_port_range_is_honoured() {
        let config = WebRtcConfig {
            udp_port_range: Some((40_000, 40_100)),
            ..WebRtcConfig::loopback()
        };
        let addr = pick_udp_addr(&config).expect("a free port");
        assert!((40_000..=40_100).contains(&addr.port()));
        let bad = WebRtcConfig {
            udp_port_range: Some((5, 1)),
            ..WebRtcConfig::loopback()
        };
        assert!(pick_udp_addr(&bad).is_err());
    }

    #[test]
    fn ice_server_debug_hides_the_credential() {
        let s: IceServer = serde_json::from_value(serde_json::json!({
            "urls": ["turn:turn.example:3478"], "username": "u", "credential": "hunter2"
        }))
        .expect("parse");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
