//! Result folders and files: `<UTC timestamp>-<kind>/` with `events.jsonl`, `summary.json`
//! and `summary.md`, plus the machine description every summary carries.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// The default parent of result folders: `bench/results` in the workspace.
fn results_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ` (sortable, safe in file names).
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The current UTC time in RFC 3339, for summaries.
pub fn utc_now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Creates the output folder: `explicit` if given, else `bench/results/<stamp>-<kind>`.
pub fn result_dir(explicit: Option<PathBuf>, kind: &str) -> Result<PathBuf> {
    let dir = explicit.unwrap_or_else(|| results_root().join(format!("{}-{kind}", utc_stamp())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes one JSON value per line.
pub struct JsonLines {
    /// The file being written.
    path: PathBuf,
    /// Buffered writer on it.
    out: BufWriter<File>,
}

impl JsonLines {
    /// Creates (truncates) `path`.
    pub fn create(path: PathBuf) -> Result<JsonLines> {
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(JsonLines {
            path,
            out: BufWriter::new(file),
        })
    }

    /// Appends one record.
    pub fn write(&mut self, value: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Writes `summary.json` (pretty) and `summary.md` into `dir`.
pub fn write_summary(dir: &Path, summary: &impl Serialize, markdown: &str) -> Result<()> {
    let json_path = dir.join("summary.json");
    let mut json = serde_json::to_string_pretty(summary).context("serializing the summary")?;
    json.push('\n');
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, markdown).with_context(|| format!("writing {}", md_path.display()))
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use (`available_parallelism`).
    pub cores: usize,
    /// CPU model from `/proc/cpuinfo`, when readable.
    pub cpu: Option<String>,
    /// Operating system and architecture.
    pub os: String,
    /// Whether the binary was built with optimisations (numbers from debug builds are not
    /// comparable).
    pub release_build: bool,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        Machine {
            cores: available_cores(),
            cpu,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            release_build: !cfg!(debug_assertions),
        }
    }

    /// One Markdown line describing the machine.
    pub fn markdown(&self) -> String {
        format!(
            "Machine: {} cores, {}, {}, {} build.",
            self.cores,
            self.cpu.as_deref().unwrap_or("unknown CPU"),
            self.os,
            if self.release_build {
                "release"
            } else {
                "debug"
            }
        )
    }
}

/// Cores this process may use, at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A Markdown table with a header row and a separator row.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        headers.iter().map(|_| "---|").collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// A figure with `decimals` places, or `–` when absent.
pub fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_header_and_separator() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(fmt_opt(None, 2), "–");
        assert_eq!(fmt_opt(Some(1.234), 2), "1.23");
    }

    #[test]
    fn stamps_sort_and_fit_file_names() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.ends_with('Z') && s.contains('T'));
    }
}
