//! Bench inputs: where the fixtures, rubrics and Whisper model are, the fixture manifest, and
//! clip selection by glob.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

/// The workspace root, as seen when this binary was built.
/// The repository root (the bench crate's parent folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Paths every subcommand reads.
#[derive(Debug, Clone, Args)]
pub struct Paths {
    /// Directory with the audio fixtures and their `manifest.json`.
    #[arg(long, default_value_os_t = workspace_root().join("audio-fixtures"))]
    pub fixtures: PathBuf,
    /// Directory with the discipline rubrics (`*.toml`).
    #[arg(long, default_value_os_t = workspace_root().join("rubrics"))]
    pub rubrics: PathBuf,
    /// The Whisper ggml model (default: $NEXTMARK_HOME/models/ggml-tiny.en.bin, with
    /// NEXTMARK_HOME defaulting to ~/.cache/nextmark).
    #[arg(long, env = "NEXTMARK_MODEL")]
    pub model: Option<PathBuf>,
}

impl Paths {
    /// The model file to load; an error that says how to get one when it is missing.
    pub fn model_path(&self) -> Result<PathBuf> {
        let path = match &self.model {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ => nextmark_home().join("models").join("ggml-tiny.en.bin"),
        };
        if !path.is_file() {
            bail!(
                "no Whisper model at {}: run `make model` (or set NEXTMARK_MODEL to a ggml file)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// `NEXTMARK_HOME`, else `~/.cache/nextmark`.
fn nextmark_home() -> PathBuf {
    if let Some(home) = std::env::var_os("NEXTMARK_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    user_home.join(".cache").join("nextmark")
}

/// A silent gap listed in the manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Pause {
    /// Start, seconds on the clip's clock.
    pub start_s: f64,
    /// End, seconds on the clip's clock.
    pub end_s: f64,
    /// `mid_sentence` or `between_sentences`: whether an end-of-answer detector may cut here.
    #[serde(default)]
    pub kind: Option<String>,
}

/// One clip of the manifest (only the fields the bench uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Clip {
    /// File name inside the fixtures directory.
    pub file: String,
    /// The rubric item the clip answers; `None` for the silence and noise clips.
    pub item_id: Option<String>,
    /// Discipline (rubric id) of the item.
    pub discipline: Option<String>,
    /// `strong`, `weak`, `silence` or `noise`.
    pub quality: String,
    /// What was said, for WER.
    pub reference_text: String,
    /// First voiced instant, seconds (none for non-speech clips).
    pub first_voiced_s: Option<f64>,
    /// Last voiced instant, seconds: the end of the answer, for the end-of-answer final lag.
    pub last_voiced_s: Option<f64>,
    /// Pauses of 1.5 s or more.
    #[serde(default)]
    pub pauses: Vec<Pause>,
}

/// The fixture manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Every clip.
    pub clips: Vec<Clip>,
}

impl Manifest {
    /// Reads `manifest.json` from the fixtures directory.
    pub fn load(fixtures: &Path) -> Result<Manifest> {
        let path = fixtures.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The answer clips (those that answer an item).
    pub fn answers(&self) -> impl Iterator<Item = &Clip> {
        self.clips.iter().filter(|c| c.item_id.is_some())
    }

    /// The shortest answer clip by its last voiced instant.
    pub fn shortest_answer(&self) -> Result<&Clip> {
        self.answers()
            .filter_map(|c| c.last_voiced_s.map(|s| (s, c)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
            .context("the manifest lists no answer clip")
    }

    /// Clips chosen by `spec`: `all` (every answer clip) or comma-separated globs over file
    /// names (any clip, including silence and noise), in manifest order.
    pub fn select(&self, spec: &str) -> Result<Vec<&Clip>> {
        let spec = spec.trim();
        let chosen: Vec<&Clip> = if spec.eq_ignore_ascii_case("all") {
            self.answers().collect()
        } else {
            let globs: Vec<&str> = spec
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .collect();
            self.clips
                .iter()
                .filter(|c| globs.iter().any(|g| glob_match(g, &c.file)))
                .collect()
        };
        if chosen.is_empty() {
            bail!("--clips {spec:?} matches no clip in the manifest");
        }
        Ok(chosen)
    }
}

/// Shell-style match of a whole name: `*` is any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("*", "a.wav"));
        assert!(glob_match(
            "med-*",
            "med-chest-pain-ed.strong.piper.16k.wav"
        ));
        assert!(glob_match(
            "*.weak.*",
            "law-email-acceptance.weak.espeak.16k.flac"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("med-*", "law-x.wav"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn the_committed_manifest_has_sixteen_answers() {
        let m = Manifest::load(&workspace_root().join("audio-fixtures")).unwrap();
        assert_eq!(m.answers().count(), 16);
        assert_eq!(m.select("all").unwrap().len(), 16);
        assert_eq!(m.select("med-*").unwrap().len(), 4);
        assert_eq!(m.select("silence.wav, noise.wav").unwrap().len(), 2);
        assert!(m.select("nothing-*").is_err());
        assert!(m.shortest_answer().unwrap().last_voiced_s.is_some());
    }
}
