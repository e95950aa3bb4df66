//! `nextmark-bench`: measures the live transcription path (`asr`), the per-turn cost of the
//! interview engine (`engine`) and the whole live server end to end (`live`: turn latency,
//! cut-ins, captions, memory, CPU, capacity) on this machine, times single whisper calls
//! (`decode`: the floor under the final lag), and writes per-event JSON Lines
//! plus a JSON and Markdown summary so that every reported figure can be recomputed. `smoke` is
//! a tiny run of `asr`, `engine` and `decode` that checks the harness itself. See `bench/README.md` for
//! the definitions.

mod asr;
mod decode;
mod engine;
mod failover;
mod fixtures;
mod live;
mod output;
mod stats;
mod svg;
mod turns;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Command line of `nextmark-bench`.
#[derive(Debug, Parser)]
#[command(name = "nextmark-bench", version, about)]
struct Cli {
    /// What to measure.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Streams fixture answers through the live transcription path and measures real-time
    /// factor, caption and final lag, WER and dropped partials.
    Asr(AsrArgs),
    /// Times score_answer + ability update + next-item selection per turn over every rubric.
    Engine(EngineArgs),
    /// Simulated applicants talk to a live `nextmark serve --demo` at one or more concurrency
    /// levels: end-to-end turn latency, cut-ins, caption lag, WER, server memory and CPU, and
    /// the capacity (the largest level that stays responsive).
    Live(LiveArgs),
    /// Two servers on one database: how long an applicant waits for their interview when the
    /// instance running it hands it over (alive) or dies (kill -9).
    Failover(FailoverArgs),
    /// Times single whisper calls on the start of one answer clip by audio length, threads
    /// and vocabulary prompt, and the least final lag each allows on this machine.
    Decode(DecodeArgs),
    /// Replays the voice events and finals an `asr` run recorded through this build's turn
    /// detector: where each answer would end, cut-ins and the delay after the last word, as
    /// the answer to its own item and to an open question. Seconds per run, no whisper.
    Turns(TurnsArgs),
    /// A tiny, fast run of both (one short clip in fast mode, one engine iteration) that
    /// writes the same files under `--out DIR/asr` and `--out DIR/engine`.
    Smoke(SmokeArgs),
}

/// Options of `nextmark-bench asr`.
#[derive(Debug, Args)]
struct AsrArgs {
    /// Clips to run: `all` (every answer clip in the manifest, i.e. those with an item) or a
    /// comma-separated list of globs (`*`, `?`) matched against manifest file names.
    #[arg(long, default_value = "all")]
    clips: String,
    /// Pace the audio at real time, as a microphone would (the default).
    #[arg(long, conflicts_with = "fast")]
    realtime: bool,
    /// Feed the audio as fast as possible (lags are then not measured).
    #[arg(long)]
    fast: bool,
    /// Decoder workers (default: one per two cores, as `PoolConfig::for_cores`).
    #[arg(long)]
    workers: Option<usize>,
    /// whisper threads per worker (default: cores / workers).
    #[arg(long)]
    threads: Option<usize>,
    /// No partial captions: finals only.
    #[arg(long)]
    no_partials: bool,
    /// A final that finds the pool idle runs on every core (`PoolConfig::boost_idle_finals`,
    /// the server's `live.asr_boost_idle_finals`); off by default, as in the server.
    #[arg(long)]
    boost_idle_finals: bool,
    /// Give the decoder the discipline rubric's glossary as a vocabulary prompt.
    #[arg(long, conflicts_with = "item_prompt")]
    glossary: bool,
    /// Give the decoder the glossary terms of the clip's item (the server's
    /// `live.vocabulary_prompt = "item"`).
    #[arg(long, conflicts_with = "item_first_prompt")]
    item_prompt: bool,
    /// Give the decoder the clip's item terms, then the rest of the glossary up to 250
    /// characters (the server's `live.vocabulary_prompt = "item_first"`).
    #[arg(long, conflicts_with = "glossary")]
    item_first_prompt: bool,
    /// Output directory (default: `bench/results/<UTC timestamp>-asr`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench engine`.
#[derive(Debug, Args)]
struct EngineArgs {
    /// Measured passes over every rubric's item bank (after one unmeasured warm-up pass).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Output directory (default: `bench/results/<UTC timestamp>-engine`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench live`.
#[derive(Debug, Args)]
struct LiveArgs {
    /// Concurrency levels to sweep, comma-separated; each runs fresh interviews in turn.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    sessions: Vec<usize>,
    /// Questions each session answers before it says bye.
    #[arg(long, default_value_t = 4)]
    turns: usize,
    /// How the microphone reaches the server: PCM on the WebSocket, or a WebRTC call.
    #[arg(long, value_enum, default_value = "ws")]
    transport: live::Transport,
    /// Answer clips to play: `all` or comma-separated globs over manifest file names.
    #[arg(long, default_value = "all")]
    clips: String,
    /// Discipline of the demo interviews.
    #[arg(long, default_value = "medicine")]
    discipline: String,
    /// Seconds between the starts of the sessions of a level.
    #[arg(long, default_value_t = 0.5)]
    stagger_s: f64,
    /// Use this running server (base URL, started with --demo) instead of spawning one.
    #[arg(long, conflicts_with = "nextmark")]
    server: Option<String>,
    /// Process id of the --server, to sample its memory and CPU.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// The nextmark binary to spawn (default: next to this executable).
    #[arg(long)]
    nextmark: Option<PathBuf>,
    /// NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS for the spawned server.
    #[arg(long)]
    max_items: Option<usize>,
    /// Transcribe through this OpenAI-compatible endpoint (`http://host:port/v1`) instead of
    /// local whisper (the spawned server gets `NEXTMARK_LIVE_STT=openai`, local whisper as
    /// its fallback).
    #[arg(long, conflicts_with = "server")]
    stt_url: Option<String>,
    /// Skip the unmeasured warm-up session (one turn, the shortest clip) before the levels.
    #[arg(long)]
    no_warmup: bool,
    /// Longest wait, seconds, for the server to go idle (CPU < 15 % and RSS steady for 1.5 s)
    /// after start-up and after the warm-up, before a memory baseline is taken.
    #[arg(long, default_value_t = 60.0)]
    settle_s: f64,
    /// Also run the faster-whisper peer (`bench/peers/`) on the same answers at every level,
    /// after the server's levels, and put the two side by side.
    #[arg(long)]
    peer: bool,
    /// The peer's entry script.
    #[arg(long, default_value_os_t = fixtures::workspace_root().join("bench/peers/run.sh"))]
    peer_script: PathBuf,
    /// Output directory (default: `bench/results/<UTC timestamp>-live`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench failover`.
#[derive(Debug, Args)]
struct FailoverArgs {
    /// Repetitions, each with two fresh servers.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Lease length of both servers, seconds (the server's default is 10).
    #[arg(long, default_value_t = 10)]
    lease_secs: u64,
    /// The shared database (default: one SQLite file opened by both).
    #[arg(long)]
    database_url: Option<String>,
    /// The nextmark binary to spawn (default: next to this executable).
    #[arg(long)]
    nextmark: Option<PathBuf>,
    /// Output directory (default: `bench/results/<UTC timestamp>-failover`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench turns`.
#[derive(Debug, Args)]
struct TurnsArgs {
    /// The `asr` result folder to replay (its `events.jsonl`, `vad.jsonl`, `summary.json`).
    #[arg(long)]
    from: PathBuf,
    /// For a fast `asr` run: a final reaches the detector this long after its utterance ends.
    #[arg(long, default_value_t = turns::DEFAULT_FINAL_LAG_S)]
    final_lag_s: f64,
    /// Override a turn detector setting (`TurnConfig` field), e.g. `--set finished_silence_s=0.8`;
    /// repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    settings: Vec<String>,
    /// Output directory (default: `bench/results/<UTC timestamp>-turns`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench decode`.
#[derive(Debug, Args)]
struct DecodeArgs {
    /// Clips to choose from (`all` or comma-separated globs); the longest answer among them
    /// is used.
    #[arg(long, default_value = "all")]
    clips: String,
    /// Audio lengths to decode, seconds from the clip's first voiced instant.
    #[arg(long, default_value = "2,5,8,11", value_delimiter = ',')]
    lengths: Vec<f64>,
    /// whisper thread counts to try (default: 1 and every core).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed calls per row, after one untimed call.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Output directory (default: `bench/results/<UTC timestamp>-decode`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

/// Options of `nextmark-bench smoke`.
#[derive(Debug, Args)]
struct SmokeArgs {
    /// Directory to write `asr/` and `engine/` result folders into.
    #[arg(long)]
    out: PathBuf,
    /// Common paths.
    #[command(flatten)]
    paths: fixtures::Paths,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Asr(a) => {
            let out = output::result_dir(a.out, "asr")?;
            let options = asr::AsrOptions {
                clips: a.clips,
                realtime: a.realtime || !a.fast,
                workers: a.workers,
                threads: a.threads,
                partials: !a.no_partials,
                boost_idle_finals: a.boost_idle_finals,
                glossary: a.glossary,
                item_prompt: a.item_prompt,
                item_first_prompt: a.item_first_prompt,
            };
            asr::run(&a.paths, &options, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Engine(e) => {
            let out = output::result_dir(e.out, "engine")?;
            engine::run(&e.paths, e.iterations, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Live(l) => {
            let out = output::result_dir(l.out, "live")?;
            let options = live::LiveOptions {
                sessions: l.sessions,
                turns: l.turns,
                transport: l.transport,
                clips: l.clips,
                discipline: l.discipline,
                server: l.server,
                server_pid: l.server_pid,
                nextmark: l.nextmark,
                stagger_s: l.stagger_s,
                max_items: l.max_items,
                stt_url: l.stt_url,
                warmup: !l.no_warmup,
                settle_max: std::time::Duration::from_secs_f64(l.settle_s.max(0.0)),
                peer: l.peer.then(|| live::PeerSetup {
                    script: l.peer_script.clone(),
                    fixtures: l.paths.fixtures.clone(),
                }),
            };
            live::run(&l.paths, &options, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Failover(f) => {
            let out = output::result_dir(f.out, "failover")?;
            let options = failover::FailoverOptions {
                runs: f.runs.max(1),
                lease_secs: f.lease_secs,
                database_url: f.database_url,
                nextmark: f.nextmark,
            };
            failover::run(&f.paths, &options, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Decode(d) => {
            let out = output::result_dir(d.out, "decode")?;
            let mut threads = d.threads;
            if threads.is_empty() {
                threads = vec![1, output::available_cores()];
                threads.dedup();
            }
            let options = decode::DecodeBenchOptions {
                clips: d.clips,
                lengths_s: d.lengths,
                threads,
                repeats: d.repeats,
            };
            decode::run(&d.paths, &options, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Turns(t) => {
            let out = output::result_dir(t.out, "turns")?;
            let config = turns::config_with(&t.settings)?;
            turns::run(&t.paths, &t.from, t.final_lag_s, config, &out)?;
            eprintln!("results in {}", out.display());
        }
        Command::Smoke(s) => smoke(&s)?,
    }
    Ok(())
}

/// The smallest run that exercises every output: the shortest answer clip in fast mode, one
/// measured engine pass, and one timed whisper call of 2 s on one thread.
fn smoke(args: &SmokeArgs) -> Result<()> {
    let clip = fixtures::Manifest::load(&args.paths.fixtures)?
        .shortest_answer()?
        .file
        .clone();
    let asr_out = output::result_dir(Some(args.out.join("asr")), "asr")?;
    let options = asr::AsrOptions {
        clips: clip,
        realtime: false,
        workers: None,
        threads: None,
        partials: true,
        boost_idle_finals: false,
        glossary: false,
        item_prompt: false,
        item_first_prompt: false,
    };
    asr::run(&args.paths, &options, &asr_out)?;
    let engine_out = output::result_dir(Some(args.out.join("engine")), "engine")?;
    engine::run(&args.paths, 1, &engine_out)?;
    let decode_out = output::result_dir(Some(args.out.join("decode")), "decode")?;
    let options = decode::DecodeBenchOptions {
        clips: "all".into(),
        lengths_s: vec![2.0],
        threads: vec![1],
        repeats: 1,
    };
    decode::run(&args.paths, &options, &decode_out)?;
    eprintln!("smoke results in {}", args.out.display());
    Ok(())
}
