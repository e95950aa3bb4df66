//! The server under test: spawning `nextmark serve --demo` on a free port with a throw-away
//! database, waiting for `/healthz`, creating demo interviews, reading `/metrics`, and sampling
//! the server process's CPU time and resident memory from `/proc`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nextmark_server::live::DemoInterview;
use serde::Serialize;

/// How long the server may take to answer `/healthz` (model load, migrations, debug builds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Resource sampling period.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(500);

/// Finds the `nextmark` binary: `explicit`, else next to this executable, else in the other
/// Cargo profile folder beside it (`target/release` ↔ `target/debug`).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--nextmark {}: no such file", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no parent folder")?
        .to_path_buf();
    let name = format!("nextmark{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = vec![dir.join(&name)];
    if let Some(target) = dir.parent() {
        for profile in ["release", "debug"] {
            candidates.push(target.join(profile).join(&name));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "no nextmark binary next to {} (build it: `cargo build --release -p nextmark-server`, \
             or pass --nextmark PATH, or --server URL for a running one)",
            exe.display()
        )
    })
}

/// A free TCP port on the loopback interface (bound, then released for the server).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

/// A random secret of 48 hex characters.
pub fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..48)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A `nextmark serve --demo` child process; killed when dropped.
pub struct SpawnedServer {
    /// The process.
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Process id, for `/proc` sampling.
    pub pid: u32,
    /// The `NEXTMARK_*` variables it was given (the secret masked).
    pub env: BTreeMap<String, String>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// Holds the database and recordings; removed on drop.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SpawnedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedServer")
            .field("url", &self.url)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// What the spawned server is told besides the basics.
#[derive(Debug, Clone)]
pub struct SpawnSettings {
    /// The Whisper model (`NEXTMARK_LIVE_MODEL`).
    pub model: PathBuf,
    /// The rubrics folder (`NEXTMARK_RUBRICS_DIR`).
    pub rubrics: PathBuf,
    /// `NEXTMARK_LIVE_MAX_SESSIONS`.
    pub max_sessions: usize,
    /// `NEXTMARK_LIVE_RESUME_WINDOW_SECS`.
    pub resume_window_secs: u64,
    /// `NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS`, if set.
    pub max_items: Option<usize>,
    /// `NEXTMARK_LIVE_STT_BASE_URL` (with `NEXTMARK_LIVE_STT=openai`), if set.
    pub stt_url: Option<String>,
    /// A database to share with other servers (default: a fresh SQLite file of its own).
    pub database_url: Option<String>,
    /// More `NEXTMARK_*` variables (later ones win).
    pub extra_env: Vec<(String, String)>,
}

impl SpawnedServer {
    /// Starts `binary serve --demo` on a free port with its output in `log`.
    pub fn spawn(binary: &Path, settings: &SpawnSettings, log: &Path) -> Result<SpawnedServer> {
        let dir = tempfile::Builder::new()
            .prefix("nextmark-bench-live-")
            .tempdir()
            .context("creating a temporary folder for the server")?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut env = BTreeMap::new();
        env.insert(
            "NEXTMARK_DATABASE_URL".to_string(),
            settings
                .database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display())),
        );
        env.insert(
            "NEXTMARK_LIVE_RECORDINGS_DIR".into(),
            dir.path().join("rec").display().to_string(),
        );
        env.insert("NEXTMARK_PUBLIC_URL".into(), url.clone());
        env.insert(
            "NEXTMARK_RUBRICS_DIR".into(),
            settings.rubrics.display().to_string(),
        );
        env.insert(
            "NEXTMARK_LIVE_MODEL".into(),
            settings.model.display().to_string(),
        );
        env.insert(
            "NEXTMARK_LIVE_MAX_SESSIONS".into(),
            settings.max_sessions.to_string(),
        );
        env.insert(
            "NEXTMARK_LIVE_RESUME_WINDOW_SECS".into(),
            settings.resume_window_secs.to_string(),
        );
        if let Some(n) = settings.max_items {
            env.insert("NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS".into(), n.to_string());
        }
        if let Some(url) = &settings.stt_url {
            env.insert("NEXTMARK_LIVE_STT".into(), "openai".into());
            env.insert("NEXTMARK_LIVE_STT_BASE_URL".into(), url.clone());
        }
        env.insert(
            "NEXTMARK_STORAGE_URL".into(),
            format!("file://{}", dir.path().join("objects").display()),
        );
        env.extend(settings.extra_env.iter().cloned());
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .envs(&env)
            .env(
                "NEXTMARK_SECRET",
                settings
                    .extra_env
                    .iter()
                    .find(|(k, _)| k == "NEXTMARK_SECRET")
                    .map_or_else(random_secret, |(_, v)| v.clone()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("sharing the server log")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        env.insert("NEXTMARK_SECRET".into(), "(masked)".into());
        Ok(SpawnedServer {
            pid: child.id(),
            child,
            url,
            env,
            log: log.to_path_buf(),
            _dir: dir,
        })
    }

    /// SIGKILL: the process dies without any shutdown path (a crashed instance).
    pub fn kill_9(&mut self) -> Result<()> {
        self.child.kill().context("killing the server")?;
        self.child.wait().context("reaping the server")?;
        Ok(())
    }

    /// Waits for `/healthz` to answer 200; fails early if the process exits.
    pub async fn wait_healthy(&mut self, http: &reqwest::Client) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("checking the server")? {
                bail!(
                    "the server exited during start-up ({status}); its log ({}) ends:\n{}",
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            let healthy = http
                .get(format!("{}/healthz", self.url))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(started.elapsed());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "the server did not answer /healthz within {STARTUP_TIMEOUT:?}; its log ends:\n{}",
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Creates a demo interview.
pub async fn create_interview(
    http: &reqwest::Client,
    base: &str,
    discipline: &str,
) -> Result<DemoInterview> {
    let response = http
        .post(format!("{base}/v1/demo/interviews"))
        .json(&serde_json::json!({ "discipline": discipline }))
        .send()
        .await
        .context("POST /v1/demo/interviews")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "POST /v1/demo/interviews answered {status}: {body} (is the server run with --demo?)"
        );
    }
    response
        .json()
        .await
        .context("reading the demo interview answer")
}

/// Fetches `/metrics` (Prometheus text).
pub async fn fetch_metrics(http: &reqwest::Client, base: &str) -> Result<String> {
    let response = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .context("GET /metrics")?;
    response.text().await.context("reading /metrics")
}

/// The sum of every sample of metric `name` (with any labels) in Prometheus text; `None` when
/// the metric is absent.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = match rest.chars().next() {
            Some('{') => match rest.rfind('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            },
            Some(' ') => rest,
            _ => continue,
        };
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Counters and histogram sums read from `/metrics` for a concurrency level, as differences
/// between the end and the start of the level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricDeltas {
    /// `nextmark_partials_dropped_total`: partial captions the server shed.
    pub partials_dropped: Option<f64>,
    /// `nextmark_decodes_cancelled_total`: decodes called off once their result could no
    /// longer be used.
    pub decodes_cancelled: Option<f64>,
    /// `nextmark_finals_total`.
    pub finals: Option<f64>,
    /// `nextmark_barge_ins_total`: speech over a question being spoken.
    pub barge_ins: Option<f64>,
    /// `nextmark_protocol_errors_total`, all codes.
    pub protocol_errors: Option<f64>,
    /// `nextmark_sessions_started_total`.
    pub sessions_started: Option<f64>,
    /// `nextmark_turn_latency_seconds` observations.
    pub turn_latency_count: Option<f64>,
    /// Mean of the `nextmark_turn_latency_seconds` observations, seconds.
    pub turn_latency_mean_s: Option<f64>,
    /// Mean of the `nextmark_response_latency_seconds` observations (the server's last voiced
    /// sample to question event), seconds.
    pub response_latency_mean_s: Option<f64>,
    /// `nextmark_parked_sessions` at the end of the level (a gauge, not a difference).
    pub parked_sessions_at_end: Option<f64>,
}

impl MetricDeltas {
    /// Differences between two `/metrics` texts.
    pub fn between(before: &str, after: &str) -> MetricDeltas {
        let delta =
            |name: &str| Some(metric_sum(after, name)? - metric_sum(before, name).unwrap_or(0.0));
        let mean = |name: &str| match (
            delta(&format!("{name}_sum")),
            delta(&format!("{name}_count")),
        ) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        };
        let count = delta("nextmark_turn_latency_seconds_count");
        MetricDeltas {
            partials_dropped: delta("nextmark_partials_dropped_total"),
            decodes_cancelled: delta("nextmark_decodes_cancelled_total"),
            finals: delta("nextmark_finals_total"),
            barge_ins: delta("nextmark_barge_ins_total"),
            protocol_errors: delta("nextmark_protocol_errors_total")
                .or(Some(0.0).filter(|_| after.contains("nextmark_protocol_errors_total"))),
            sessions_started: delta("nextmark_sessions_started_total"),
            turn_latency_count: count,
            turn_latency_mean_s: mean("nextmark_turn_latency_seconds"),
            response_latency_mean_s: mean("nextmark_response_latency_seconds"),
            parked_sessions_at_end: metric_sum(after, "nextmark_parked_sessions"),
        }
    }
}

/// One reading of the server process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcReading {
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
}

/// Clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `utime + stime` in ticks from the text of `/proc/PID/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) overall; field 3 is the first after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads CPU time and RSS of process `pid`.
pub fn read_proc(pid: u32, ticks_per_s: f64) -> Result<ProcReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(ProcReading {
        cpu_s: parse_stat_ticks(&stat).context("parsing /proc/PID/stat")? as f64 / ticks_per_s,
        rss_kib: parse_status_rss_kib(&status).context("no VmRSS in /proc/PID/status")?,
    })
}

/// One line of `resources.jsonl`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResourceSample {
    /// Seconds since the bench started.
    pub at_s: f64,
    /// The concurrency level running (sessions), `None` between levels.
    pub level: Option<usize>,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Cumulative CPU time (user + system), seconds.
    pub cpu_s: f64,
    /// CPU use since the previous sample, percent of one core (200 = two cores busy).
    pub cpu_pct: Option<f64>,
}

/// Samples a process every [`SAMPLE_PERIOD`] in a background task.
pub struct Sampler {
    /// The samples so far.
    samples: Arc<Mutex<Vec<ResourceSample>>>,
    /// The level running now (0 = none), set by the bench.
    level: Arc<AtomicUsize>,
    /// The sampling task.
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`; times are seconds since `origin`.
    pub fn start(pid: u32, origin: Instant) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let level = Arc::new(AtomicUsize::new(0));
        let ticks = clock_ticks();
        let (store, current) = (Arc::clone(&samples), Arc::clone(&level));
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(SAMPLE_PERIOD);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut previous: Option<(f64, f64)> = None;
            loop {
                interval.tick().await;
                let Ok(reading) = read_proc(pid, ticks) else {
                    // The process is gone.
                    return;
                };
                let at_s = origin.elapsed().as_secs_f64();
                let cpu_pct = previous.and_then(|(t, cpu)| {
                    let dt = at_s - t;
                    (dt > 0.0).then(|| 100.0 * (reading.cpu_s - cpu) / dt)
                });
                previous = Some((at_s, reading.cpu_s));
                let level = match current.load(Ordering::Relaxed) {
                    0 => None,
                    n => Some(n),
                };
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ResourceSample {
                        at_s,
                        level,
                        rss_mib: reading.rss_kib as f64 / 1024.0,
                        cpu_s: reading.cpu_s,
                        cpu_pct,
                    });
            }
        });
        Sampler {
            samples,
            level,
            task,
        }
    }

    /// Marks which level is running (`None`: between levels).
    pub fn set_level(&self, level: Option<usize>) {
        self.level.store(level.unwrap_or(0), Ordering::Relaxed);
    }

    /// A copy of the samples so far.
    pub fn samples(&self) -> Vec<ResourceSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops sampling and returns every sample.
    pub fn stop(self) -> Vec<ResourceSample> {
        self.task.abort();
        self.samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 \
                    200000 3000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\tnextmark\nVmPeak:\t  999 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss_kib(status), Some(123_456));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let r = read_proc(std::process::id(), clock_ticks()).unwrap();
        assert!(r.rss_kib > 0 && r.cpu_s >= 0.0, "{r:?}");
    }

    #[test]
    fn prometheus_samples_are_summed_by_exact_name() {
        let text = "# HELP nextmark_partials_dropped_total x\n\
                    # TYPE nextmark_partials_dropped_total counter\n\
                    nextmark_partials_dropped_total 3\n\
                    nextmark_partials_dropped_total_extra 100\n\
                    nextmark_protocol_errors_total{code=\"bad_json\"} 2\n\
                    nextmark_protocol_errors_total{code=\"a}b\"} 1\n\
                    nextmark_turn_latency_seconds_sum 4.5\n\
                    nextmark_turn_latency_seconds_count 3\n";
        assert_eq!(
            metric_sum(text, "nextmark_partials_dropped_total"),
            Some(3.0)
        );
        assert_eq!(
            metric_sum(text, "nextmark_protocol_errors_total"),
            Some(3.0)
        );
        assert_eq!(metric_sum(text, "nextmark_missing"), None);
        let before = "nextmark_partials_dropped_total 1\nnextmark_turn_latency_seconds_sum 0.5\n\
                      nextmark_turn_latency_seconds_count 1\n";
        let d = MetricDeltas::between(before, text);
        assert_eq!(d.partials_dropped, Some(2.0));
        assert_eq!(d.turn_latency_count, Some(2.0));
        assert_eq!(d.turn_latency_mean_s, Some(2.0));
        assert_eq!(d.protocol_errors, Some(3.0));
    }
}
