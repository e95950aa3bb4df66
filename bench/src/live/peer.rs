//! The peer side of `live --peer`: the same answers, at the same concurrency, through the
//! faster-whisper pipeline of `bench/peers/` (Silero VAD, a fixed end-of-turn silence, one
//! batch transcription per turn), so that the summary can put the two side by side.
//!
//! A level of `n` sessions runs `n` peer processes at once, each playing the clip sequence
//! the bench gave session `s` (clip `(s·turns + t) mod clips` for turn `t`), started
//! `stagger_s` apart like the sessions. Each process writes one JSON line per clip; the
//! figures are recomputed here from those lines with the bench's own statistics and WER.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nextmark_engine::text::word_errors;
use serde::Serialize;

use crate::stats::Dist;

/// Seconds given to every peer process to load its model before the clips start.
const LOAD_GRACE_S: f64 = 6.0;
/// Extra load time per process: several processes load at once on a small machine.
const LOAD_GRACE_PER_PROCESS_S: f64 = 1.5;

/// Where the peer pipeline is and what it reads.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    /// `bench/peers/run.sh`.
    pub script: PathBuf,
    /// The fixture folder (with `manifest.json`).
    pub fixtures: PathBuf,
}

impl PeerSetup {
    /// Runs the peer's idempotent set-up (its virtualenv and model) before anything is timed.
    pub async fn prepare(&self) -> Result<()> {
        let setup = self.script.with_file_name("setup.sh");
        let status = tokio::process::Command::new("bash")
            .arg(&setup)
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", setup.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", setup.display());
        }
        Ok(())
    }
}

/// The peer's figures at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct PeerLevel {
    /// Peer processes run together (one per simulated applicant).
    pub sessions: usize,
    /// Processes that failed (see `peer/level-N.log`).
    pub sessions_failed: usize,
    /// Clips played.
    pub clips: usize,
    /// End of speech → final text of the turn holding it, seconds.
    pub end_of_turn_latency_s: Option<Dist>,
    /// Turns the peer's VAD ended inside a listed mid-sentence pause.
    pub cut_ins: usize,
    /// Summed word errors (the bench's `word_errors`, on every clip).
    pub word_errors: usize,
    /// Summed reference words.
    pub reference_words: usize,
    /// `word_errors / reference_words`.
    pub wer: Option<f64>,
    /// faster-whisper compute, seconds, summed.
    pub compute_s: f64,
    /// Audio played, seconds, summed.
    pub audio_s: f64,
}

/// One clip line of the peer's output (the fields used here).
#[derive(Debug, serde::Deserialize)]
struct PeerClip {
    end_of_turn_latency_s: Option<f64>,
    cut_ins: usize,
    text: String,
    reference_text: Option<String>,
    compute_s: f64,
    audio_s: f64,
}

/// Runs `sequences.len()` peer processes together (session `s` plays `sequences[s]`) and
/// sums up their lines. Outputs go to `dir/level-N-session-S.jsonl`, stderr to
/// `dir/level-N.log`.
pub async fn run_level(
    setup: &PeerSetup,
    sequences: &[Vec<String>],
    stagger_s: f64,
    dir: &Path,
) -> Result<PeerLevel> {
    let n = sequences.len();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("level-{n}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let start_at = now + LOAD_GRACE_S + LOAD_GRACE_PER_PROCESS_S * n as f64;
    let mut children = Vec::with_capacity(n);
    for (session, sequence) in sequences.iter().enumerate() {
        let out = dir.join(format!("level-{n}-session-{session}.jsonl"));
        let child = tokio::process::Command::new("bash")
            .arg(&setup.script)
            .arg("--fixtures")
            .arg(&setup.fixtures)
            .arg("--sequence")
            .arg(sequence.join(","))
            .arg("--start-at")
            .arg(format!("{:.3}", start_at + stagger_s * session as f64))
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(log.try_clone().context("sharing the peer log")?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", setup.script.display()))?;
        children.push((out, child));
    }
    let mut failed = 0;
    let mut clips = Vec::new();
    for (out, mut child) in children {
        let status = child.wait().await.context("waiting for a peer process")?;
        if !status.success() {
            failed += 1;
            continue;
        }
        clips.extend(read_clips(&out)?);
    }
    if failed == n {
        bail!(
            "every peer process failed at {n} session(s); see {}",
            log_path.display()
        );
    }
    Ok(summarize(n, failed, &clips))
}

/// The clip lines of one peer output file (the summary line is skipped).
fn read_clips(path: &Path) -> Result<Vec<PeerClip>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut clips = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if value.get("summary").is_some() {
            continue;
        }
        clips.push(
            serde_json::from_value(value)
                .with_context(|| format!("{}:{}: not a peer clip line", path.display(), i + 1))?,
        );
    }
    Ok(clips)
}

fn summarize(sessions: usize, failed: usize, clips: &[PeerClip]) -> PeerLevel {
    let latencies: Vec<f64> = clips
        .iter()
        .filter_map(|c| c.end_of_turn_latency_s)
        .collect();
    let (mut errors, mut words) = (0, 0);
    for clip in clips {
        if let Some(reference) = &clip.reference_text {
            let (e, n) = word_errors(reference, &clip.text);
            errors += e;
            words += n;
        }
    }
    PeerLevel {
        sessions,
        sessions_failed: failed,
        clips: clips.len(),
        end_of_turn_latency_s: Dist::of(&latencies),
        cut_ins: clips.iter().map(|c| c.cut_ins).sum(),
        word_errors: errors,
        reference_words: words,
        wer: (words > 0).then(|| errors as f64 / words as f64),
        compute_s: clips.iter().map(|c| c.compute_s).sum(),
        audio_s: clips.iter().map(|c| c.audio_s).sum(),
    }
}

/// Ours against the peer at one level.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Comparison {
    /// Sessions of the level.
    pub sessions: usize,
    /// Our p50 voice turn latency ÷ the peer's p50 end-of-turn latency.
    pub latency_ratio_p50: Option<f64>,
    /// The same at p95.
    pub latency_ratio_p95: Option<f64>,
    /// Our WER − the peer's, percentage points (≤ 0: equal or better).
    pub wer_difference_points: Option<f64>,
    /// Our cut-ins and the peer's.
    pub cut_ins: (usize, usize),
}

impl Comparison {
    /// Compares our level figures with the peer's.
    pub fn of(
        sessions: usize,
        ours_voice: Option<Dist>,
        ours_wer: Option<f64>,
        ours_cut_ins: usize,
        peer: &PeerLevel,
    ) -> Comparison {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let theirs = peer.end_of_turn_latency_s;
        Comparison {
            sessions,
            latency_ratio_p50: ratio(ours_voice.map(|d| d.p50), theirs.map(|d| d.p50)),
            latency_ratio_p95: ratio(ours_voice.map(|d| d.p95), theirs.map(|d| d.p95)),
            wer_difference_points: ours_wer.zip(peer.wer).map(|(a, b)| (a - b) * 100.0),
            cut_ins: (ours_cut_ins, peer.cut_ins),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(latency: Option<f64>, cut_ins: usize, text: &str) -> PeerClip {
        PeerClip {
            end_of_turn_latency_s: latency,
            cut_ins,
            text: text.to_string(),
            reference_text: Some("the troponin is high".to_string()),
            compute_s: 0.5,
            audio_s: 10.0,
        }
    }

    #[test]
    fn a_level_pools_every_clip_of_every_process() {
        let clips = [
            clip(Some(1.0), 0, "the troponin is high"),
            clip(Some(2.0), 1, "the troponin is"),
            clip(None, 0, "a troponin is high"),
        ];
        let level = summarize(2, 0, &clips);
        assert_eq!(level.clips, 3);
        assert_eq!(level.cut_ins, 1);
        let latency = level.end_of_turn_latency_s.expect("latencies");
        assert_eq!((latency.n, latency.p50, latency.max), (2, 1.0, 2.0));
        assert_eq!((level.word_errors, level.reference_words), (2, 12));
        assert!((level.compute_s - 1.5).abs() < 1e-9);
    }

    #[test]
    fn comparison_divides_ours_by_the_peer() {
        let peer = summarize(1, 0, &[clip(Some(2.0), 1, "the troponin is high")]);
        let ours = Dist::of(&[0.8]);
        let c = Comparison::of(1, ours, Some(0.05), 0, &peer);
        assert!((c.latency_ratio_p50.expect("ratio") - 0.4).abs() < 1e-9);
        assert!((c.wer_difference_points.expect("wer") - 5.0).abs() < 1e-9);
        assert_eq!(c.cut_ins, (0, 1));
        let none = Comparison::of(1, None, None, 0, &peer);
        assert!(none.latency_ratio_p50.is_none() && none.wer_difference_points.is_none());
    }

    #[test]
    fn peer_lines_must_parse() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            "{\"end_of_turn_latency_s\":1.2,\"cut_ins\":0,\"text\":\"a\",\"reference_text\":\"a\",\
             \"compute_s\":0.1,\"audio_s\":3.0}\n{\"summary\":true}\n",
        )
        .expect("write");
        assert_eq!(read_clips(&path).expect("clips").len(), 1);
        std::fs::write(&path, "{\"cut_ins\":\"x\"}\n").expect("write");
        let err = read_clips(&path).expect_err("bad line").to_string();
        assert!(err.contains("p.jsonl:1"), "{err}");
    }
}
