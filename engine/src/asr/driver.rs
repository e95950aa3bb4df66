//! Drives a whole clip through the live path (front-end → streaming transcriber → backend), as
//! fast as possible or paced in real time. Used by `nextmark transcribe`, the tests and the
//! bench, so that they all measure what a live session does.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::pool::{AsrJob, AsrOutput, SubmitError};
use super::stream::{AsrRequest, StreamConfig, StreamingTranscriber, TranscriptEvent};
use super::{AsrError, Segment, Transcriber};
use crate::audio::{AudioFrontEnd, DecodedAudio, TARGET_RATE, VadConfig, VadEvent};

/// How to drive the clip.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Pace input at real time (as a microphone would), instead of as fast as possible.
    pub realtime: bool,
    /// Input chunk length.
    pub chunk_ms: u32,
    /// Streaming settings.
    pub stream: StreamConfig,
    /// VAD settings.
    pub vad: VadConfig,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            realtime: false,
            chunk_ms: 20,
            stream: StreamConfig::default(),
            vad: VadConfig::default(),
        }
    }
}

/// One transcript event with when it happened.
#[derive(Debug, Clone, Serialize)]
pub struct TimedEvent {
    /// The event.
    #[serde(flatten)]
    pub event: TranscriptEvent,
    /// Audio fed so far when it was emitted (session clock, seconds).
    pub at_audio_s: f64,
    /// Wall time since the drive started, seconds.
    pub at_wall_s: f64,
    /// Decode time of the request that produced it, seconds.
    pub compute_s: f64,
}

/// The outcome of a drive.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRun {
    /// All final texts joined.
    pub text: String,
    /// Final segments on the clip's clock.
    pub segments: Vec<Segment>,
    /// Clip length, seconds.
    pub audio_s: f64,
    /// Wall time of the whole drive, seconds.
    pub wall_s: f64,
    /// Every transcript event, in order.
    pub events: Vec<TimedEvent>,
    /// Partials the backend dropped under load.
    pub dropped_partials: usize,
    /// The front-end's voice starts and ends in order, each with the audio fed (seconds) when
    /// it was emitted: what a live session feeds its turn detector beside the finals.
    #[serde(skip)]
    pub vad: Vec<(f64, VadEvent)>,
}

type Done = (u64, Result<AsrOutput, AsrError>);

/// Runs `audio` through the front-end and streaming transcriber on `backend`.
pub fn transcribe_stream(
    backend: &dyn Transcriber,
    audio: &DecodedAudio,
    options: &DriveOptions,
) -> Result<StreamRun, AsrError> {
    let to_err = |e: crate::audio::AudioError| AsrError::Inference(e.to_string());
    let mut frontend = AudioFrontEnd::new(audio.sample_rate, 1, options.vad).map_err(to_err)?;
    let mut stream = StreamingTranscriber::new(options.stream.clone());
    let (tx, rx) = mpsc::channel::<Done>();
    let started = Instant::now();
    let mut run = StreamRun {
        text: String::new(),
        segments: Vec::new(),
        audio_s: 0.0,
        wall_s: 0.0,
        events: Vec::new(),
        dropped_partials: 0,
        vad: Vec::new(),
    };
    let chunk = (audio.sample_rate as usize * options.chunk_ms as usize / 1000).max(1);
    let mut fed = 0usize;
    for block in audio.samples.chunks(chunk) {
        fed += block.len();
        if options.realtime {
            let due = Duration::from_secs_f64(fed as f64 / f64::from(audio.sample_rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Results that arrive while waiting are handled as they come.
                let deadline = Instant::now() + wait;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(done) => handle(&mut stream, done, &mut run, started),
                        Err(_) => break,
                    }
                }
            }
        }
        let out = frontend.push_f32(block).map_err(to_err)?;
        let fed_s = fed as f64 / f64::from(audio.sample_rate);
        run.vad.extend(out.events.iter().map(|e| (fed_s, *e)));
        let requests = stream.push(out.audio, out.events);
        submit_all(backend, requests, &tx)?;
        collect(&mut stream, &mut run, started);
        while let Ok(done) = rx.try_recv() {
            handle(&mut stream, done, &mut run, started);
        }
    }
    let out = frontend.finish().map_err(to_err)?;
    let fed_s = fed as f64 / f64::from(audio.sample_rate);
    run.vad.extend(out.events.iter().map(|e| (fed_s, *e)));
    let mut requests = stream.push(out.audio, out.events);
    requests.extend(stream.finish());
    submit_all(backend, requests, &tx)?;
    collect(&mut stream, &mut run, started);
    while stream.in_flight() > 0 || stream.finals_pending() {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(done) => handle(&mut stream, done, &mut run, started),
            Err(_) => {
                return Err(AsrError::Inference(
                    "transcription backend stopped answering".into(),
                ));
            }
        }
        collect(&mut stream, &mut run, started);
    }
    run.audio_s = stream.now_s();
    run.wall_s = started.elapsed().as_secs_f64();
    for e in &run.events {
        if let TranscriptEvent::Final { segments, .. } = &e.event {
            run.segments.extend(segments.iter().cloned());
        }
    }
    run.text = super::join_text(&run.segments);
    Ok(run)
}

fn submit_all(
    backend: &dyn Transcriber,
    requests: Vec<AsrRequest>,
    tx: &mpsc::Sender<Done>,
) -> Result<(), AsrError> {
    for r in requests {
        let mut job = Some(AsrJob {
            kind: r.kind,
            samples: r.samples,
            options: r.options,
            reply: {
                let tx = tx.clone();
                let id = r.id;
                Box::new(move |result| {
                    let _ = tx.send((id, result));
                })
            },
        });
        // Finals are never dropped: wait for room.
        while let Some(j) = job.take() {
            match backend.submit(j) {
                Ok(()) => {}
                Err(rejected) if rejected.error == SubmitError::Full => {
                    std::thread::sleep(Duration::from_millis(10));
                    job = Some(rejected.job);
                }
                Err(rejected) => return Err(AsrError::Inference(rejected.error.to_string())),
            }
        }
    }
    Ok(())
}

fn handle(
    stream: &mut StreamingTranscriber,
    (id, result): Done,
    run: &mut StreamRun,
    started: Instant,
) {
    let compute_s = result
        .as_ref()
        .map(|o| o.compute.as_secs_f64())
        .unwrap_or(0.0);
    if matches!(result, Err(AsrError::Dropped)) {
        run.dropped_partials += 1;
    }
    stream.observe_cost(id, compute_s);
    let events = stream.on_result(id, result.map(|o| o.segments));
    let at_audio_s = stream.now_s();
    for event in events {
        run.events.push(TimedEvent {
            event,
            at_audio_s,
            at_wall_s: started.elapsed().as_secs_f64(),
            compute_s,
        });
    }
}

fn collect(stream: &mut StreamingTranscriber, run: &mut StreamRun, started: Instant) {
    let at_audio_s = stream.now_s();
    for event in stream.drain_ready() {
        run.events.push(TimedEvent {
            event,
            at_audio_s,
            at_wall_s: started.elapsed().as_secs_f64(),
            compute_s: 0.0,
        });
    }
}

/// Seconds of 16 kHz audio in `samples`.
pub fn seconds(samples: usize) -> f64 {
    samples as f64 / f64::from(TARGET_RATE)
}
