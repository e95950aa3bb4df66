//! Runs `nextmark-bench smoke`, and a one-turn `nextmark-bench live`, into temporary folders
//! and checks that every output file exists and is well formed. Timings are never checked: they
//! depend on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// The two runs load the same cores; one at a time keeps each quick.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_lines(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn has_keys(value: &Value, keys: &[&str], what: &str) {
    for k in keys {
        assert!(value.get(k).is_some(), "{what} lacks `{k}`: {value}");
    }
}

/// The first line is a table header and the next a separator.
fn has_table(markdown: &str, first_column: &str) {
    let lines: Vec<&str> = markdown.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with(&format!("| {first_column} |")))
        .unwrap_or_else(|| panic!("no table with a `{first_column}` column in:\n{markdown}"));
    let separator = lines.get(header + 1).copied().unwrap_or_default();
    assert!(
        separator.starts_with("|---|"),
        "no separator row under the header:\n{markdown}"
    );
    assert!(
        lines.len() > header + 2,
        "the table has no rows:\n{markdown}"
    );
}

#[test]
fn smoke_run_writes_well_formed_results() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nextmark-bench"))
        .arg("smoke")
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "nextmark-bench smoke failed: {status}");

    let asr = out.path().join("asr");
    let summary = json(&asr.join("summary.json"));
    has_keys(
        &summary,
        &[
            "kind",
            "mode",
            "rtf_definition",
            "model",
            "pool",
            "machine",
            "overall",
            "clips",
        ],
        "asr summary",
    );
    assert_eq!(summary["kind"], "asr");
    assert_eq!(summary["mode"], "fast");
    has_keys(
        &summary["overall"],
        &[
            "clips",
            "audio_s",
            "rtf",
            "wall_rtf",
            "decode_rtf",
            "wer",
            "word_errors",
            "reference_words",
            "dropped_partials",
            "partial_lag_s",
            "final_lag_s",
            "end_of_answer_final_lag_s",
        ],
        "asr overall",
    );
    let clips = summary["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 1);
    has_keys(
        &clips[0],
        &[
            "file",
            "audio_s",
            "rtf",
            "wer",
            "text",
            "decodes",
            "dropped_partials",
        ],
        "asr clip",
    );
    let events = json_lines(&asr.join("events.jsonl"));
    assert!(!events.is_empty(), "no transcript event");
    for e in &events {
        has_keys(
            e,
            &[
                "clip",
                "seq",
                "kind",
                "at_audio_s",
                "at_wall_s",
                "compute_s",
            ],
            "asr event",
        );
    }
    assert!(
        events.iter().any(|e| e["kind"] == "final"),
        "no final event"
    );
    for d in json_lines(&asr.join("decodes.jsonl")) {
        has_keys(
            &d,
            &[
                "clip",
                "kind",
                "audio_s",
                "compute_s",
                "queued_s",
                "dropped",
            ],
            "decode",
        );
    }
    has_table(&read(&asr.join("summary.md")), "clip");
    // The voice events the turn replay reads, and the replay itself.
    let voice = json_lines(&asr.join("vad.jsonl"));
    for v in &voice {
        has_keys(v, &["clip", "voice", "at_s", "at_audio_s"], "voice event");
    }
    for kind in ["start", "end"] {
        assert!(
            voice.iter().any(|v| v["voice"] == kind),
            "no voice {kind} in {voice:?}"
        );
    }
    let replays = clips[0]["turns"].as_array().expect("turn replays");
    assert_eq!(replays.len(), 2, "as its item's answer and an open one");
    for r in replays {
        has_keys(
            r,
            &["question", "decided_at_s", "reason", "cut_in", "transcript"],
            "replay",
        );
        assert!(r["decided_at_s"].is_number(), "every replay decides: {r}");
    }
    assert_eq!(summary["turns"].as_array().map(Vec::len), Some(2));
    // `turns` reads the run back and replays it again, with a setting changed.
    let replayed = out.path().join("turns");
    let status = Command::new(env!("CARGO_BIN_EXE_nextmark-bench"))
        .args(["turns", "--set", "finished_silence_s=0.7", "--from"])
        .arg(&asr)
        .arg("--out")
        .arg(&replayed)
        .status()
        .unwrap();
    assert!(status.success(), "nextmark-bench turns failed: {status}");
    let again = json(&replayed.join("summary.json"));
    assert_eq!(again["kind"], "turns");
    assert_eq!(again["config"]["finished_silence_s"], 0.7);
    assert_eq!(
        again["clips"][0]["replays"].as_array().map(Vec::len),
        Some(2)
    );
    has_table(&read(&replayed.join("summary.md")), "question");
    // A setting the detector does not have is refused, naming it.
    let refused = Command::new(env!("CARGO_BIN_EXE_nextmark-bench"))
        .args(["turns", "--set", "patience=9", "--from"])
        .arg(&asr)
        .arg("--out")
        .arg(out.path().join("refused"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("\"patience\""), "{stderr}");

    let engine = out.path().join("engine");
    let summary = json(&engine.join("summary.json"));
    has_keys(
        &summary,
        &[
            "kind",
            "iterations",
            "target_p99_ms",
            "meets_target",
            "machine",
            "overall",
            "disciplines",
        ],
        "engine summary",
    );
    assert_eq!(summary["kind"], "engine");
    has_keys(
        &summary["overall"],
        &["turns", "turn_ms", "score_ms", "update_ms", "select_ms"],
        "engine overall",
    );
    has_keys(
        &summary["overall"]["turn_ms"],
        &["n", "p50", "p95", "p99", "max"],
        "turn_ms",
    );
    let disciplines = summary["disciplines"].as_array().unwrap();
    assert!(!disciplines.is_empty());
    for d in disciplines {
        has_keys(d, &["discipline", "items", "stages"], "discipline");
    }
    let turns = json_lines(&engine.join("events.jsonl"));
    assert!(!turns.is_empty(), "no engine turn");
    for t in &turns {
        has_keys(
            t,
            &[
                "iteration",
                "discipline",
                "item",
                "score",
                "score_ms",
                "update_ms",
                "select_ms",
                "turn_ms",
            ],
            "turn",
        );
    }
    has_table(&read(&engine.join("summary.md")), "discipline");

    let decode = out.path().join("decode");
    let summary = json(&decode.join("summary.json"));
    assert_eq!(summary["kind"], "decode");
    has_keys(
        &summary,
        &[
            "clip",
            "model",
            "repeats",
            "vad_hangover_s",
            "segmenter_post_roll_s",
            "machine",
            "rows",
        ],
        "decode summary",
    );
    let rows = summary["rows"].as_array().unwrap();
    // One length on one thread, without and with the item's prompt.
    assert_eq!(rows.len(), 2, "{summary}");
    for row in rows {
        has_keys(
            row,
            &[
                "prompt",
                "prompt_chars",
                "threads",
                "length_s",
                "audio_ctx",
                "best_s",
                "median_s",
                "final_lag_floor_s",
            ],
            "decode row",
        );
        let best = row["best_s"].as_f64().unwrap();
        assert!(best > 0.0, "{row}");
        // No final comes before its decode, started when the VAD hears the speech stop.
        let hangover = summary["vad_hangover_s"].as_f64().unwrap();
        let post_roll = summary["segmenter_post_roll_s"].as_f64().unwrap();
        let floor = row["final_lag_floor_s"].as_f64().unwrap();
        assert!(floor >= hangover + best - post_roll - 1e-9, "{row}");
    }
    let calls = json_lines(&decode.join("calls.jsonl"));
    assert_eq!(calls.len(), 2, "one timed call per row");
    for c in &calls {
        has_keys(
            c,
            &[
                "prompt",
                "threads",
                "length_s",
                "audio_ctx",
                "compute_s",
                "words",
            ],
            "call",
        );
        // Two seconds of an answer are words, not silence.
        assert!(c["words"].as_u64().unwrap() > 0, "{c}");
    }
    has_table(&read(&decode.join("summary.md")), "prompt");
}

/// The `nextmark` binary where the bench looks for it (next to itself, or in the other Cargo
/// profile folder); `cargo test -p nextmark-bench` does not build it.
fn nextmark_binary() -> Option<PathBuf> {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_nextmark-bench"));
    let dir = bench.parent()?;
    let name = format!("nextmark{}", std::env::consts::EXE_SUFFIX);
    [
        Some(dir.join(&name)),
        dir.parent().map(|t| t.join("debug").join(&name)),
        dir.parent().map(|t| t.join("release").join(&name)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// The answer clip with the earliest `last_voiced_s`.
fn shortest_answer_clip() -> String {
    let manifest =
        json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../audio-fixtures/manifest.json"));
    manifest["clips"]
        .as_array()
        .expect("the manifest lists clips")
        .iter()
        .filter(|c| c["item_id"].is_string())
        .filter_map(|c| {
            Some((
                c["last_voiced_s"].as_f64()?,
                c["file"].as_str()?.to_string(),
            ))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("the manifest has an answer clip")
        .1
}

#[test]
fn live_run_writes_well_formed_results() {
    let Some(nextmark) = nextmark_binary() else {
        eprintln!(
            "SKIPPED: no nextmark binary beside the bench (`cargo build -p nextmark-server`; \
             `make test` builds it)"
        );
        return;
    };
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nextmark-bench"))
        .args([
            "live",
            "--sessions",
            "1",
            "--turns",
            "1",
            "--no-warmup",
            "--clips",
        ])
        .arg(shortest_answer_clip())
        .arg("--nextmark")
        .arg(&nextmark)
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "nextmark-bench live failed: {status}");
    let dir = out.path();

    let summary = json(&dir.join("summary.json"));
    has_keys(
        &summary,
        &[
            "kind",
            "transport",
            "turns_per_session",
            "sessions_swept",
            "clips",
            "server",
            "machine",
            "definitions",
            "target_p95_voice_s",
            "capacity_sessions",
            "levels",
        ],
        "live summary",
    );
    assert_eq!(summary["kind"], "live");
    assert_eq!(summary["transport"], "ws");
    has_keys(
        &summary["server"],
        &[
            "mode",
            "url",
            "binary",
            "pid",
            "startup_s",
            "rss_startup_mib",
        ],
        "live server",
    );
    let levels = summary["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 1);
    has_keys(
        &levels[0],
        &[
            "sessions",
            "sessions_failed",
            "turns",
            "voice_turn_latency_s",
            "speech_turn_latency_s",
            "server_turn_latency_s",
            "cut_ins",
            "cut_ins_in_pause",
            "caption_lag_s",
            "wer",
            "rss_peak_mib",
            "rss_per_session_mib",
            "cpu_mean_pct",
            "cpu_peak_pct",
            "metrics",
            "lag_growth",
            "meets_target",
            "misses",
        ],
        "live level",
    );
    assert_eq!(levels[0]["sessions"], 1);

    let sessions = json_lines(&dir.join("sessions.jsonl"));
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    has_keys(
        &sessions[0],
        &[
            "level",
            "session",
            "interview_id",
            "outcome",
            "turns",
            "errors",
        ],
        "session",
    );
    assert_eq!(sessions[0]["outcome"], "bye", "{}", sessions[0]);
    let turns = json_lines(&dir.join("turns.jsonl"));
    assert_eq!(turns.len(), 1, "{turns:?}");
    has_keys(
        &turns[0],
        &[
            "level",
            "session",
            "turn",
            "question_id",
            "clip",
            "voiced_end_sent_at_s",
            "voice_turn_latency_s",
            "speech_turn_latency_s",
            "server_turn_latency_s",
            "cut_in",
            "text",
            "wer",
        ],
        "turn",
    );
    assert_eq!(turns[0]["question_id"], "intro");
    // The next question is spoken on the socket: an answered turn is heard after its event.
    if let Some(voice) = turns[0]["voice_turn_latency_s"].as_f64() {
        let speech = turns[0]["speech_turn_latency_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("no speech turn latency: {}", turns[0]));
        assert!(speech >= voice, "heard before it arrived: {}", turns[0]);
    }
    for c in json_lines(&dir.join("captions.jsonl")) {
        has_keys(
            &c,
            &["turn", "kind", "text", "end_s", "at_s", "lag_s"],
            "caption",
        );
    }
    let messages = json_lines(&dir.join("messages.jsonl"));
    assert!(
        messages.iter().any(|m| m["message"]["type"] == "ready"),
        "no ready message"
    );
    let samples = json_lines(&dir.join("resources.jsonl"));
    assert!(!samples.is_empty(), "no resource sample");
    for r in &samples {
        has_keys(
            r,
            &["at_s", "rss_mib", "cpu_s", "cpu_pct"],
            "resource sample",
        );
    }
    for plot in ["latency_cdf.svg", "resources.svg"] {
        let svg = read(&dir.join(plot));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot} is not an SVG document"
        );
    }
    let md = read(&dir.join("summary.md"));
    has_table(&md, "sessions");
    has_table(&md, "session");
}

#[test]
fn failover_run_writes_well_formed_results() {
    let Some(nextmark) = nextmark_binary() else {
        eprintln!("SKIPPED: no nextmark binary beside the bench (`make test` builds it)");
        return;
    };
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nextmark-bench"))
        .args(["failover", "--runs", "1", "--lease-secs", "2"])
        .arg("--nextmark")
        .arg(&nextmark)
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run nextmark-bench failover");
    assert!(status.success(), "nextmark-bench failover failed: {status}");
    let summary = json(&out.path().join("summary.json"));
    has_keys(
        &summary,
        &[
            "machine",
            "lease_secs",
            "database",
            "runs",
            "handover_s",
            "takeover_s",
        ],
        "failover summary",
    );
    let runs = json_lines(&out.path().join("runs.jsonl"));
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    has_keys(run, &["handover_s", "takeover_s"], "a run");
    // A takeover cannot be quicker than nothing, nor wait much past the lease.
    let takeover = run["takeover_s"].as_f64().expect("number");
    assert!(takeover > 0.0 && takeover < 60.0, "{run}");
    has_table(&read(&out.path().join("summary.md")), "case");
}
