//! The `nextmark` command line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nextmark_engine::asr::WhisperModel;
use nextmark_engine::asr::driver::{DriveOptions, transcribe_stream};
use nextmark_engine::asr::pool::{PoolConfig, WorkerPool};
use nextmark_engine::audio::{DecodeLimits, decode_file};
use nextmark_engine::model::{WeightFormat, convert_ct2_dir, verify_ggml};
use nextmark_engine::rubric;
use serde_json::json;

use crate::models;

/// Nextmark's adaptive voice interview engine.
#[derive(Debug, Parser)]
#[command(name = "nextmark", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the platform API (applicants, screening, reviewers, tasks, payouts) over HTTP.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "NEXTMARK_LISTEN")]
        listen: String,
        /// A TOML configuration file (then `NEXTMARK_*` variables override it).
        #[arg(long, env = "NEXTMARK_CONFIG")]
        config: Option<PathBuf>,
        /// Database URL (`sqlite://PATH` or `postgres://...`).
        #[arg(long)]
        database_url: Option<String>,
        /// Create demo reviewer and admin accounts and print their credentials.
        #[arg(long)]
        demo: bool,
    },
    /// Install, convert or check Whisper models.
    Model {
        /// Model action.
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Check rubric files.
    Rubric {
        /// Rubric action.
        #[command(subcommand)]
        action: RubricAction,
    },
    /// Score one answer (text or audio) to one rubric item.
    Score {
        /// Discipline id (a file in the rubrics directory).
        #[arg(long)]
        discipline: String,
        /// Item id.
        #[arg(long)]
        item: String,
        /// The answer as text.
        #[arg(long, conflicts_with = "audio", required_unless_present = "audio")]
        text: Option<String>,
        /// The answer as an audio file (transcribed first).
        #[arg(long)]
        audio: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Rubrics directory.
        #[arg(long, default_value = "rubrics", env = "NEXTMARK_RUBRICS")]
        rubrics: PathBuf,
        /// A ggml Whisper model (for audio answers).
        #[arg(long, env = "NEXTMARK_MODEL")]
        model: Option<PathBuf>,
    },
    /// Run a whole interview from answers given in order (text, or audio files).
    Interview {
        /// Discipline id.
        #[arg(long)]
        discipline: String,
        /// Seed (same seed and answers → same interview).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Answers, in order: text, or paths of audio files.
        answers: Vec<String>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Rubrics directory.
        #[arg(long, default_value = "rubrics", env = "NEXTMARK_RUBRICS")]
        rubrics: PathBuf,
        /// A ggml Whisper model (for audio answers).
        #[arg(long, env = "NEXTMARK_MODEL")]
        model: Option<PathBuf>,
        /// Regrade every answer for the report with an OpenAI-compatible LLM at this base URL
        /// (e.g. `http://127.0.0.1:8000/v1`); the key comes from `NEXTMARK_LLM_API_KEY`.
        #[arg(long, env = "NEXTMARK_LLM_BASE_URL", requires = "llm_model")]
        llm_base_url: Option<String>,
        /// The LLM grader's model name.
        #[arg(long, env = "NEXTMARK_LLM_MODEL")]
        llm_model: Option<String>,
        /// The LLM grader's timeout per answer, seconds.
        #[arg(long, default_value_t = 20.0)]
        llm_timeout_s: f64,
    },
    /// Transcribe audio files through the live session's audio path.
    Transcribe {
        /// Audio files (WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON object per file.
        #[arg(long)]
        json: bool,
        /// A ggml Whisper model (default: the installed tiny.en).
        #[arg(long, env = "NEXTMARK_MODEL")]
        model: Option<PathBuf>,
        /// A glossary (one term a line, or a rubric TOML) to help domain words.
        #[arg(long)]
        glossary: Option<PathBuf>,
        /// Feed audio at real-time pace, as a live microphone would.
        #[arg(long)]
        realtime: bool,
        /// Inference threads (all cores by default).
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
    },
}

/// `--weights` of `model convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsArg {
    /// Half floats.
    F16,
    /// ggml Q8_0.
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<WeightsArg> for WeightFormat {
    fn from(w: WeightsArg) -> Self {
        match w {
            WeightsArg::F16 => WeightFormat::F16,
            WeightsArg::Q8_0 => WeightFormat::Q8_0,
        }
    }
}

/// Model subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Download and convert the default Whisper tiny.en into NEXTMARK_HOME; print its path.
    Install {
        /// Reinstall even if a valid model is present.
        #[arg(long)]
        force: bool,
    },
    /// Convert a CTranslate2 Whisper directory to a ggml file.
    Convert {
        /// Directory with model.bin and vocabulary.txt.
        ct2_dir: PathBuf,
        /// Output ggml file.
        out: PathBuf,
        /// How to store the weight matrices: `f16` (as the source) or `q8_0` (8-bit, about
        /// half the size, faster on CPUs with 8-bit dot products).
        #[arg(long, value_enum, default_value_t = WeightsArg::F16)]
        weights: WeightsArg,
    },
    /// Check a ggml model file and print its header.
    Verify {
        /// The ggml file.
        file: PathBuf,
    },
    /// Print the path of the model that would be used.
    Path {
        /// An explicit model.
        #[arg(long, env = "NEXTMARK_MODEL")]
        model: Option<PathBuf>,
    },
}

/// Rubric subcommands.
#[derive(Debug, Subcommand)]
pub enum RubricAction {
    /// Validate rubric files (a file or a directory of `*.toml`; default `rubrics/`).
    Check {
        /// A rubric file or directory.
        path: Option<PathBuf>,
    },
}

/// Threads for inference: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Model { action } => model(action),
        Command::Serve {
            listen,
            config,
            database_url,
            demo,
        } => serve(&listen, config, database_url, demo),
        Command::Score {
            discipline,
            item,
            text,
            audio,
            json,
            rubrics,
            model,
        } => crate::interview_cli::score(&rubrics, &discipline, &item, text, audio, json, model),
        Command::Interview {
            discipline,
            seed,
            answers,
            json,
            html,
            rubrics,
            model,
            llm_base_url,
            llm_model,
            llm_timeout_s,
        } => {
            let llm = match (llm_base_url, llm_model) {
                (Some(base_url), Some(model)) => {
                    let key = std::env::var("NEXTMARK_LLM_API_KEY").unwrap_or_default();
                    let mut config = crate::grader::LlmGraderConfig::new(base_url, model, key);
                    config.timeout = std::time::Duration::from_secs_f64(llm_timeout_s.max(0.001));
                    Some(crate::grader::LlmGrader::new(config)?)
                }
                _ => None,
            };
            crate::interview_cli::interview(
                &rubrics,
                &discipline,
                seed,
                &answers,
                json,
                html,
                model,
                llm,
            )
        }
        Command::Rubric {
            action: RubricAction::Check { path },
        } => rubric_check(path.unwrap_or_else(|| PathBuf::from("rubrics"))),
        Command::Transcribe {
            files,
            json,
            model,
            glossary,
            realtime,
            threads,
        } => transcribe(&files, json, model, glossary, realtime, threads),
    }
}

fn serve(
    listen: &str,
    config: Option<PathBuf>,
    database_url: Option<String>,
    demo: bool,
) -> Result<()> {
    use crate::platform::PlatformConfig;
    let mut cfg = PlatformConfig::load(config.as_deref())?;
    if let Some(url) = database_url {
        cfg.database_url = url;
    }
    if let Some(dir) = cfg
        .database_url
        .strip_prefix("sqlite://")
        .and_then(|path| std::path::Path::new(path).parent())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let transcriber = {
        let _inside = runtime.enter();
        crate::live::start_transcriber(&cfg.live)?
    };
    runtime.block_on(async {
        let speech = Arc::new(crate::live::speech_cache(&cfg.live)?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let (app, live) = crate::live::build(
            cfg,
            listener,
            crate::live::LiveDependencies {
                platform: crate::platform::Dependencies::default(),
                transcriber,
                speech,
                demo,
            },
        )
        .await?;
        eprintln!(
            "nextmark: serving on http://{listen} (API under /v1, interview socket \
             /v1/interview-links/{{token}}/live, /healthz, /metrics, /openapi.json)"
        );
        if demo {
            let (email, password) = app.ensure_demo_reviewer().await?;
            eprintln!("demo reviewer: {email} / {password}");
            let (email, password) = app.ensure_demo_admin().await?;
            eprintln!("demo admin:    {email} / {password}");
            eprintln!(
                "demo interviews: curl -X POST http://{listen}/v1/demo/interviews -d '{{\"discipline\":\"medicine\"}}' -H 'content-type: application/json'"
            );
        }
        crate::live::run(app, live, async {
            shutdown_signal().await;
            eprintln!("nextmark: shutting down (finishing answers in flight)");
        })
        .await
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn model(action: ModelAction) -> Result<()> {
    match action {
        ModelAction::Install { force } => {
            let (path, summary) = models::install_default_model(force)?;
            eprintln!(
                "model ok: {} tensors, {} bytes",
                summary.tensors, summary.bytes
            );
            println!("{}", path.display());
        }
        ModelAction::Convert {
            ct2_dir,
            out,
            weights,
        } => {
            let summary = convert_ct2_dir(&ct2_dir, &out, weights.into())?;
            eprintln!(
                "wrote {}: {} tensors, {} bytes",
                out.display(),
                summary.tensors,
                summary.bytes
            );
        }
        ModelAction::Verify { file } => {
            let summary = verify_ggml(&file)?;
            println!(
                "{}: ok, {} tensors, {} vocabulary tokens, {} bytes, {:?}",
                file.display(),
                summary.tensors,
                summary.vocab_tokens,
                summary.bytes,
                summary.hparams
            );
        }
        ModelAction::Path { model } => {
            println!("{}", models::resolve_model(model.as_deref())?.display());
        }
    }
    Ok(())
}

fn rubric_check(path: PathBuf) -> Result<()> {
    let result = if path.is_dir() {
        rubric::load_dir(&path)
    } else {
        rubric::Rubric::load(&path).map(|r| vec![r])
    };
    match result {
        Ok(rubrics) => {
            for r in &rubrics {
                println!(
                    "{}: ok ({} competencies, {} items, {} case studies, {} glossary terms)",
                    r.id,
                    r.competencies.len(),
                    r.items.len(),
                    r.case_studies.len(),
                    r.glossary.len()
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!("{} problem(s) found", e.issues.len())
        }
    }
}

/// Reads a glossary: one term a line, `#` comments, or a rubric TOML's `glossary` array.
pub fn read_glossary(path: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let terms: Vec<String> = if path.extension().is_some_and(|e| e == "toml") {
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
        value
            .get("glossary")
            .and_then(|g| g.as_array())
            .with_context(|| format!("{}: no `glossary` array", path.display()))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    Ok(terms.join(", "))
}

fn transcribe(
    files: &[PathBuf],
    json: bool,
    model: Option<PathBuf>,
    glossary: Option<PathBuf>,
    realtime: bool,
    threads: usize,
) -> Result<()> {
    let model_path = models::resolve_model(model.as_deref())?;
    let model = WhisperModel::load(&model_path)?;
    let pool = WorkerPool::start(&model, PoolConfig::for_cores(threads))?;
    let mut options = DriveOptions {
        realtime,
        ..DriveOptions::default()
    };
    options.stream.prompt = glossary
        .as_deref()
        .map(read_glossary)
        .transpose()?
        .map(Into::into);
    let stdout = std::io::stdout();
    let mut failures = 0;
    for (i, file) in files.iter().enumerate() {
        if files.len() > 1 {
            eprint!("\r[{}/{}] {:<60}", i + 1, files.len(), file.display());
        }
        let started = Instant::now();
        let result = decode_file(file, DecodeLimits::default())
            .map_err(anyhow::Error::from)
            .and_then(|audio| Ok(transcribe_stream(&pool, &audio, &options)?));
        let compute_s = started.elapsed().as_secs_f64();
        let mut out = stdout.lock();
        match result {
            Ok(t) => {
                if json {
                    let value = json!({
                        "file": file.display().to_string(),
                        "text": t.text,
                        "segments": t.segments,
                        "audio_s": t.audio_s,
                        "compute_s": compute_s,
                    });
                    writeln!(out, "{value}")?;
                } else {
                    writeln!(out, "{}: {}", file.display(), t.text)?;
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("\nerror: {e:#}");
            }
        }
    }
    if files.len() > 1 {
        eprintln!();
    }
    pool.shutdown();
    if failures > 0 {
        anyhow::bail!("{failures} of {} files failed", files.len());
    }
    Ok(())
}
