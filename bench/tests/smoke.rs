//! Runs `nextmark-bench smoke` into a temporary folder and checks that every output file exists
//! and is well formed. Timings are never checked: they depend on the machine.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

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
}
