//! `nextmark transcribe`: the JSON fixed point of DESIGN.md, real speech, fixture answers, and
//! no text on silence or noise.

use nextmark_engine::text::wer;

use crate::helpers::{JFK_TEXT, fixtures_dir, jfk_wav, manifest, nextmark, stderr, stdout};

fn transcribe_json(files: &[String]) -> Vec<serde_json::Value> {
    let mut args = vec!["transcribe", "--json"];
    args.extend(files.iter().map(String::as_str));
    let out = nextmark(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn jfk_real_speech_gives_the_expected_words_in_the_fixed_json_shape() {
    let Some(jfk) = jfk_wav() else { return };
    let out = transcribe_json(&[jfk.display().to_string()]);
    assert_eq!(out.len(), 1);
    let v = &out[0];
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["audio_s", "compute_s", "file", "segments", "text"]);
    let text = v["text"].as_str().expect("text");
    assert!(wer(JFK_TEXT, text) <= 0.05, "{text}");
    assert!((v["audio_s"].as_f64().expect("audio_s") - 11.0).abs() < 0.1);
    for s in v["segments"].as_array().expect("segments") {
        let (a, b) = (
            s["start_s"].as_f64().expect("start"),
            s["end_s"].as_f64().expect("end"),
        );
        assert!(a <= b && b <= 11.1, "{s}");
        assert!(s["text"].is_string());
    }
}

#[test]
fn fixture_answers_transcribe_close_to_their_reference() {
    let m = manifest();
    let picks: Vec<&serde_json::Value> = m["clips"]
        .as_array()
        .expect("clips")
        .iter()
        .filter(|c| {
            c["voice"].as_str().is_some_and(|v| v.contains("piper")) && c["noise_snr_db"].is_null()
        })
        .take(2)
        .collect();
    assert_eq!(picks.len(), 2);
    let files: Vec<String> = picks
        .iter()
        .map(|c| {
            fixtures_dir()
                .join(c["file"].as_str().expect("file"))
                .display()
                .to_string()
        })
        .collect();
    let out = transcribe_json(&files);
    for (clip, result) in picks.iter().zip(&out) {
        let reference = clip["reference_text"].as_str().expect("reference");
        let text = result["text"].as_str().expect("text");
        let w = wer(reference, text);
        assert!(
            w < 0.25,
            "{}: WER {w:.2}\nref: {reference}\nhyp: {text}",
            clip["file"]
        );
    }
}

#[test]
fn silence_and_noise_give_no_text() {
    let files = ["silence.wav", "noise.wav"].map(|f| fixtures_dir().join(f).display().to_string());
    for v in transcribe_json(&files) {
        assert_eq!(v["text"], "", "{v}");
        assert_eq!(v["segments"].as_array().map(Vec::len), Some(0), "{v}");
    }
}
