//! `nextmark score` and `nextmark interview` end to end: text and audio answers, reports
//! written, strong spoken answers outscoring weak ones through the transcriber.

use crate::helpers::{fixtures_dir, nextmark, root, stderr, stdout};

fn knowledge_of(json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("score JSON");
    v["score"]["dimensions"][0]["score"]
        .as_u64()
        .expect("knowledge score")
}

#[test]
fn spoken_strong_answers_outscore_weak_ones_through_the_transcriber() {
    let rubrics = root().join("rubrics");
    for (discipline, item) in [
        ("medicine", "med-chest-pain-ed"),
        ("finance", "fin-dcf-valuation"),
    ] {
        let mut scores = Vec::new();
        for quality in ["strong", "weak"] {
            let file = std::fs::read_dir(fixtures_dir())
                .expect("fixtures")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    n.starts_with(&format!("{item}.{quality}."))
                })
                .expect("fixture");
            let out = nextmark(&[
                "score",
                "--discipline",
                discipline,
                "--item",
                item,
                "--audio",
                file.to_str().expect("utf8"),
                "--json",
                "--rubrics",
                rubrics.to_str().expect("utf8"),
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            scores.push(knowledge_of(&stdout(&out)));
        }
        assert!(
            scores[0] > scores[1],
            "{item}: strong {} vs weak {}",
            scores[0],
            scores[1]
        );
    }
}

#[test]
fn interview_cli_asks_adapts_and_writes_reports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (json, html) = (tmp.path().join("r.json"), tmp.path().join("r.html"));
    let answer = "I would start with the history and examination, then order the key tests because the differential matters; for example an ECG and troponin, and I would treat according to the guideline with specific doses and escalate if it fails.";
    let mut args = vec![
        "interview".to_string(),
        "--discipline".into(),
        "medicine".into(),
        "--seed".into(),
        "42".into(),
        "--rubrics".into(),
        root().join("rubrics").display().to_string(),
        "--json".into(),
        json.display().to_string(),
        "--html".into(),
        html.display().to_string(),
        "Yes, I agree.".into(),
        "I am an internal medicine physician with ten years in hospital practice.".into(),
    ];
    args.extend(std::iter::repeat_n(answer.to_string(), 40));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = nextmark(&refs);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Q1:") && text.contains("-- finished"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("report JSON");
    assert_eq!(report["version"], 1);
    assert!(report["items"].as_array().expect("items").len() >= 6);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.starts_with("<!doctype html>") && page.contains("<svg"));
    // The same seed and answers give the same interview.
    let again = nextmark(&refs);
    assert_eq!(stdout(&again), text);
    // Unknown discipline: a clear error naming the known ones.
    let bad = nextmark(&[
        "interview",
        "--discipline",
        "astrology",
        "--rubrics",
        root().join("rubrics").to_str().expect("utf8"),
    ]);
    assert!(
        !bad.status.success()
            && stderr(&bad).contains("unknown discipline")
            && stderr(&bad).contains("medicine")
    );
}
