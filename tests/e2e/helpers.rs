//! Shared helpers: where the binary, the model, the fixtures and jfk.wav are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `nextmark` binary built next to this test binary.
pub fn nextmark_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-xxxx → target/<profile>/nextmark
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("nextmark");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p nextmark-server` (make test does)",
        bin.display()
    );
    bin
}

/// Runs `nextmark ARGS...`.
pub fn nextmark(args: &[&str]) -> Output {
    Command::new(nextmark_bin())
        .args(args)
        .output()
        .expect("run nextmark")
}

/// The installed default model (make test installs it first).
pub fn model_path() -> PathBuf {
    let p = nextmark_server::models::default_model_path();
    assert!(
        p.exists(),
        "no model at {}: run `make model` (make test does) or `nextmark model install`",
        p.display()
    );
    p
}

/// The committed audio fixtures.
pub fn fixtures_dir() -> PathBuf {
    root().join("audio-fixtures")
}

/// The fixture manifest.
pub fn manifest() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// Real human speech from `../shared/audio/jfk.wav`, read where it is. `None` (with a
/// plain message) when the shared folder is absent.
pub fn jfk_wav() -> Option<PathBuf> {
    let p = root().join("../shared/audio/jfk.wav");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; the real-speech check did not run",
            p.display()
        );
        None
    }
}

/// The words of jfk.wav (shared/MODEL.md).
pub const JFK_TEXT: &str = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country.";

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
