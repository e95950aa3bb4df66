//! The streaming transcription path against offline whisper on the committed fixtures: same
//! words (within 2 WER points), chunking-independent finals, stable captions that only grow,
//! finals emitted once and in order.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use nextmark_engine::asr::driver::{DriveOptions, StreamRun, transcribe_stream};
use nextmark_engine::asr::pool::{PoolConfig, WorkerPool};
use nextmark_engine::asr::stream::TranscriptEvent;
use nextmark_engine::asr::{DecodeOptions, WhisperModel, join_text};
use nextmark_engine::audio::{DecodeLimits, DecodedAudio, StreamResampler, decode_file};
use nextmark_engine::text::word_errors;

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NEXTMARK_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("NEXTMARK_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/nextmark")
        });
    let p = home.join("models/ggml-tiny.en.bin");
    assert!(
        p.exists(),
        "no model at {}: run `make model` (make test does)",
        p.display()
    );
    p
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../audio-fixtures")
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
        .unwrap()
}

fn answers() -> Vec<(String, String, DecodedAudio)> {
    manifest()["clips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["last_voiced_s"].is_number())
        .map(|c| {
            let file = c["file"].as_str().unwrap().to_string();
            let audio = decode_file(&fixtures().join(&file), DecodeLimits::default()).unwrap();
            (
                file,
                c["reference_text"].as_str().unwrap().to_string(),
                audio,
            )
        })
        .collect()
}

fn pool(model: &WhisperModel) -> WorkerPool {
    WorkerPool::start(model, PoolConfig::for_cores(2)).unwrap()
}

/// A 16 s answer, 16 kHz: long enough that a decode of it is still running a few
/// milliseconds after a worker took it.
fn short_answer_16k() -> Vec<f32> {
    to_16k(
        &decode_file(
            &fixtures().join("med-sepsis-first-hour.weak.piper.8k.wav"),
            DecodeLimits::default(),
        )
        .unwrap(),
    )
}

fn to_16k(a: &DecodedAudio) -> Vec<f32> {
    let mut r = StreamResampler::new(a.sample_rate).unwrap();
    let mut out = Vec::new();
    r.push(&a.samples, &mut out).unwrap();
    r.flush(&mut out).unwrap();
    out
}

/// Issue 3's accuracy target: the live path (VAD-cut utterances, speculative finals) loses at
/// most two points of word error rate against whisper decoding each whole clip, over every
/// answer fixture (measured: 12.7 % against 11.1 % over 1,413 words).
#[test]
fn streaming_wer_is_within_two_points_of_offline_whisper() {
    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = pool(&model);
    let mut worker = model.worker(2).unwrap();
    let opts = DriveOptions::default();
    let (mut stream_err, mut offline_err, mut words) = (0, 0, 0);
    for (file, reference, audio) in answers() {
        let run = transcribe_stream(&pool, &audio, &opts).unwrap();
        let offline = join_text(
            &worker
                .transcribe(
                    &to_16k(&audio),
                    &DecodeOptions {
                        full_window: true,
                        ..DecodeOptions::default()
                    },
                )
                .unwrap(),
        );
        let (s, n) = word_errors(&reference, &run.text);
        let (o, _) = word_errors(&reference, &offline);
        println!("{file}: streaming {s}/{n}, offline {o}/{n}");
        stream_err += s;
        offline_err += o;
        words += n;
    }
    let stream_wer = stream_err as f64 / words as f64;
    let offline_wer = offline_err as f64 / words as f64;
    println!("WER over {words} words: streaming {stream_wer:.3}, offline {offline_wer:.3}");
    assert!(
        stream_wer <= offline_wer + 0.02,
        "streaming {stream_wer:.3} vs offline {offline_wer:.3}"
    );
    assert!(stream_wer < 0.2, "streaming WER {stream_wer:.3}");
    pool.shutdown();
}

fn finals(run: &StreamRun) -> Vec<(u64, String)> {
    run.events
        .iter()
        .filter_map(|e| match &e.event {
            TranscriptEvent::Final {
                utterance, text, ..
            } => Some((*utterance, text.clone())),
            TranscriptEvent::Partial { .. } => None,
        })
        .collect()
}

#[test]
fn final_text_does_not_depend_on_input_chunking() {
    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = pool(&model);
    let audio = decode_file(
        &fixtures().join("med-sepsis-first-hour.weak.piper.8k.wav"),
        DecodeLimits::default(),
    )
    .unwrap();
    let run = |chunk_ms| {
        let mut o = DriveOptions {
            chunk_ms,
            ..DriveOptions::default()
        };
        o.stream.partials = false;
        transcribe_stream(&pool, &audio, &o).unwrap()
    };
    let reference = run(20);
    assert!(!reference.text.is_empty());
    for chunk_ms in [7, 100, 333] {
        let other = run(chunk_ms);
        assert_eq!(
            finals(&other),
            finals(&reference),
            "chunks of {chunk_ms} ms changed the finals"
        );
    }
    pool.shutdown();
}

/// Drives the streaming transcriber in lock-step: every decode it asks for is finished before
/// more audio goes in, so that the outcome does not depend on the machine's speed or load.
fn lockstep(pool: &WorkerPool, audio: &DecodedAudio) -> Vec<TranscriptEvent> {
    use nextmark_engine::asr::pool::AsrJob;
    use nextmark_engine::asr::stream::{StreamConfig, StreamingTranscriber};
    use nextmark_engine::audio::{AudioFrontEnd, VadConfig};

    let mut frontend = AudioFrontEnd::new(audio.sample_rate, 1, VadConfig::default()).unwrap();
    let mut stream = StreamingTranscriber::new(StreamConfig::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut events = Vec::new();
    let run = |requests: Vec<nextmark_engine::asr::stream::AsrRequest>,
               stream: &mut StreamingTranscriber,
               events: &mut Vec<TranscriptEvent>| {
        let n = requests.len();
        for r in requests {
            let tx = tx.clone();
            let id = r.id;
            let job = AsrJob {
                kind: r.kind,
                samples: r.samples,
                options: r.options,
                reply: Box::new(move |res| {
                    let _ = tx.send((id, res));
                }),
            };
            pool.submit(job).unwrap();
        }
        for _ in 0..n {
            let (id, res) = rx.recv().unwrap();
            events.extend(stream.on_result(id, res.map(|o| o.segments)));
        }
        events.extend(stream.drain_ready());
    };
    for chunk in audio.samples.chunks(320) {
        let out = frontend.push_f32(chunk).unwrap();
        let requests = stream.push(out.audio, out.events);
        run(requests, &mut stream, &mut events);
    }
    let out = frontend.finish().unwrap();
    let mut requests = stream.push(out.audio, out.events);
    requests.extend(stream.finish());
    run(requests, &mut stream, &mut events);
    events
}

#[test]
fn captions_only_grow_and_finals_are_emitted_once_in_order() {
    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = pool(&model);
    let audio = decode_file(
        &fixtures().join("med-chest-pain-ed.strong.piper.16k.wav"),
        DecodeLimits::default(),
    )
    .unwrap();
    let clip = DecodedAudio {
        samples: audio.samples[..16_000 * 15].to_vec(),
        ..audio
    };
    let events = lockstep(&pool, &clip);
    let mut stable: std::collections::HashMap<u64, String> = Default::default();
    let mut last_final = None;
    let (mut partials, mut grew) = (0, 0);
    for e in &events {
        match e {
            TranscriptEvent::Partial {
                utterance,
                stable: s,
                ..
            } => {
                partials += 1;
                assert!(
                    last_final.is_none_or(|f| *utterance > f),
                    "partial after its final"
                );
                let before = stable.entry(*utterance).or_default();
                assert!(
                    s.starts_with(before.as_str()),
                    "stable words changed: {before:?} → {s:?}"
                );
                if s.len() > before.len() {
                    grew += 1;
                }
                *before = s.clone();
            }
            TranscriptEvent::Final { utterance, .. } => {
                assert!(
                    last_final.is_none_or(|f| *utterance > f),
                    "finals out of order or repeated"
                );
                last_final = Some(*utterance);
            }
        }
    }
    assert!(
        partials >= 5,
        "{partials} partial captions in 15 s of speech"
    );
    assert!(grew > 0, "stable words never grew");
    assert!(last_final.is_some());
    pool.shutdown();
}

/// Finals come first: a caption submitted while finals wait for a worker is dropped at once
/// (and counted), and every final is still decoded.
#[test]
fn captions_are_dropped_while_finals_wait() {
    use nextmark_engine::asr::pool::{AsrJob, JobKind};
    use std::sync::mpsc;

    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = WorkerPool::start(
        &model,
        PoolConfig {
            workers: 1,
            threads_per_worker: 1,
            max_queued_finals: 8,
            max_queued_partials: 4,
            boost_idle_finals: false,
        },
    )
    .unwrap();
    let audio = short_answer_16k();
    let (tx, rx) = mpsc::channel();
    let job = |kind: JobKind, tx: mpsc::Sender<(JobKind, bool)>| AsrJob {
        kind,
        samples: audio.clone(),
        options: DecodeOptions::default(),
        reply: Box::new(move |result| {
            let _ = tx.send((kind, result.is_ok()));
        }),
    };
    // One final keeps the only worker busy, the second waits in the queue.
    pool.submit(job(JobKind::Final, tx.clone())).unwrap();
    let taken = std::time::Instant::now();
    while pool.queued().0 > 0 {
        assert!(taken.elapsed().as_secs() < 10, "no worker took the final");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pool.submit(job(JobKind::Final, tx.clone())).unwrap();
    assert_eq!(pool.queued().0, 1, "the second final waits");
    pool.submit(job(JobKind::Partial, tx.clone())).unwrap();
    drop(tx);
    let results: Vec<(JobKind, bool)> = rx.iter().take(3).collect();
    assert!(
        results.contains(&(JobKind::Partial, false)),
        "the caption was dropped: {results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == (JobKind::Final, true))
            .count(),
        2,
        "both finals decoded: {results:?}"
    );
    assert_eq!(
        pool.stats()
            .dropped_partials
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A cancelled job is skipped if it has not started, and a running one stops part-way (whisper
/// asks its abort hook after the encoder and after each decoder step), reporting what it ran.
#[test]
fn a_cancelled_decode_stops_and_reports_what_it_ran() {
    use nextmark_engine::asr::pool::{AsrJob, AsrOutput, JobKind};
    use nextmark_engine::asr::{AsrError, CancelToken};
    use std::sync::mpsc;
    use std::time::Duration;

    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = WorkerPool::start(&model, PoolConfig::for_cores(1)).unwrap();
    // 25 s of a long answer: about a hundred tokens to decode after the encoder.
    let mut audio = to_16k(
        &decode_file(
            &fixtures().join("swe-slow-query.strong.piper.16k.snr20.flac"),
            DecodeLimits::default(),
        )
        .unwrap(),
    );
    audio.truncate(25 * 16_000);
    type Outcome = Result<AsrOutput, AsrError>;
    let job = |cancel: &CancelToken, tx: mpsc::Sender<Outcome>| AsrJob {
        kind: JobKind::Final,
        samples: audio.clone(),
        options: DecodeOptions {
            cancel: cancel.clone(),
            ..DecodeOptions::default()
        },
        reply: Box::new(move |result| {
            let _ = tx.send(result);
        }),
    };
    let (tx, rx) = mpsc::channel();
    let whole = CancelToken::new();
    pool.submit(job(&whole, tx.clone())).unwrap();
    let full = rx.recv().unwrap().expect("an uncancelled decode");
    assert!(full.segments.len() > 2, "{:?}", full.segments);

    let running = CancelToken::new();
    let waiting = CancelToken::new();
    pool.submit(job(&running, tx.clone())).unwrap();
    let taken = std::time::Instant::now();
    while pool.queued().0 > 0 {
        assert!(taken.elapsed().as_secs() < 10, "no worker took the job");
        std::thread::sleep(Duration::from_millis(2));
    }
    pool.submit(job(&waiting, tx.clone())).unwrap();
    waiting.cancel();
    running.cancel();
    drop(tx);
    let outcomes: Vec<Outcome> = rx.iter().take(2).collect();
    match &outcomes[..] {
        [
            Err(AsrError::Cancelled {
                compute: ran,
                threads: 1,
            }),
            Err(AsrError::Cancelled {
                compute: skipped, ..
            }),
        ] => {
            // Stopped after the encoder (measured: 1.6 s of 3.5 s here); without the abort
            // hook it runs to the end (3.5 s of 3.6 s).
            assert!(
                *ran > Duration::ZERO && ran.as_secs_f64() < 0.8 * full.compute.as_secs_f64(),
                "stopped part-way: {ran:?} of {:?}",
                full.compute
            );
            assert!(
                *skipped < Duration::from_millis(50),
                "the waiting job was not decoded: {skipped:?}"
            );
        }
        other => panic!("both jobs cancelled, in order: {other:?}"),
    }
    assert_eq!(
        pool.stats()
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // The worker whose decode was stopped decodes the next job as if nothing had happened.
    let (tx, rx) = mpsc::channel();
    pool.submit(job(&CancelToken::new(), tx)).unwrap();
    let again = rx.recv().unwrap().expect("decoded after an abort");
    assert_eq!(join_text(&again.segments), join_text(&full.segments));
    pool.shutdown();
}

/// A final that finds the pool idle runs on all of its cores; one that arrives while another
/// decode runs keeps one worker's thread, and the two run side by side.
#[test]
fn an_idle_pool_gives_a_final_every_core() {
    use nextmark_engine::asr::pool::{AsrJob, AsrOutput, JobKind};
    use std::sync::mpsc;

    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = WorkerPool::start(
        &model,
        PoolConfig {
            boost_idle_finals: true,
            ..PoolConfig::for_cores(2)
        },
    )
    .unwrap();
    let audio = short_answer_16k();
    let job = |kind: JobKind, tx: mpsc::Sender<(JobKind, AsrOutput)>| AsrJob {
        kind,
        samples: audio.clone(),
        options: DecodeOptions::default(),
        reply: Box::new(move |result| {
            let _ = tx.send((kind, result.expect("decoded")));
        }),
    };
    let (tx, rx) = mpsc::channel();
    pool.submit(job(JobKind::Final, tx.clone())).unwrap();
    let (_, alone) = rx.recv().unwrap();
    assert_eq!(alone.threads, 2, "alone, the final takes both cores");
    assert!(!alone.segments.is_empty());

    // A caption occupies one worker; a final submitted meanwhile runs beside it on one thread.
    pool.submit(job(JobKind::Partial, tx.clone())).unwrap();
    let taken = std::time::Instant::now();
    while pool.queued().1 > 0 {
        assert!(taken.elapsed().as_secs() < 10, "no worker took the caption");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    pool.submit(job(JobKind::Final, tx.clone())).unwrap();
    drop(tx);
    let results: Vec<(JobKind, AsrOutput)> = rx.iter().take(2).collect();
    for (kind, output) in &results {
        assert_eq!(output.threads, 1, "{kind:?} shared the machine");
        assert!(
            output.queued < std::time::Duration::from_millis(500),
            "{kind:?} did not wait for the other: {:?}",
            output.queued
        );
    }
    pool.shutdown();
}

/// A prompted decode that collapses to a fragment is decoded again without the prompt. Seen in
/// the bench with the live server's item prompt: the 14.5 s utterance of
/// `med-sepsis-first-hour.strong` after its 2.8 s pause came back as "norar" (a piece of the
/// prompt's "noradrenaline"); the reference has 44 words there.
#[test]
fn a_prompt_that_collapses_a_decode_is_dropped_for_that_decode() {
    let model = WhisperModel::load(&model_path()).unwrap();
    let pool = WorkerPool::start(&model, PoolConfig::for_cores(2)).unwrap();
    let rubric = nextmark_engine::rubric::Rubric::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml"),
    )
    .unwrap();
    let item = rubric.item("med-sepsis-first-hour").unwrap();
    let audio = decode_file(
        &fixtures().join("med-sepsis-first-hour.strong.espeak-en-gb.16k.flac"),
        DecodeLimits::default(),
    )
    .unwrap();
    let mut opts = DriveOptions::default();
    opts.stream.partials = false;
    opts.stream.prompt = rubric.item_prompt(item, 100).map(Into::into);
    let run = transcribe_stream(&pool, &audio, &opts).unwrap();
    pool.shutdown();
    for (utterance, text) in finals(&run) {
        let span = run.events.iter().find_map(|e| match &e.event {
            TranscriptEvent::Final {
                utterance: u,
                start_s,
                end_s,
                ..
            } if *u == utterance => Some(end_s - start_s),
            _ => None,
        });
        let seconds = span.unwrap();
        let words = text.split_whitespace().count();
        println!("{seconds:5.2} s, {words:3} words: {text}");
        assert!(
            seconds < 3.0 || words as f64 >= seconds,
            "{words} words for {seconds:.1} s of speech: {text:?}"
        );
    }
}
