//! The reviewer's report: a versioned JSON document and a standalone HTML page (inline CSS and
//! SVG charts, no external resources) that can be read in five minutes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::audio::{QualityFlag, QualityReport};
use crate::interview::{Interview, StopReason};
use crate::rubric::{Dimension, Severity};
use crate::scoring::{AnswerScore, EvidenceKind};

/// Version of the report's JSON shape.
pub const REPORT_VERSION: u32 = 1;

/// The recommendation to the reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Meets the pass thresholds with margin.
    Pass,
    /// Close to the thresholds: read carefully.
    Borderline,
    /// Below the thresholds.
    Fail,
    /// Too little was answered to judge.
    Incomplete,
}

/// Feedback categories applicants are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackCategory {
    /// Communication clarity.
    CommunicationClarity,
    /// Insufficient detail or precision.
    InsufficientDetail,
    /// Technical issues with the recording.
    TechnicalIssues,
}

/// A drafted feedback line for the reviewer to edit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackDraft {
    /// Category.
    pub category: FeedbackCategory,
    /// Suggested wording.
    pub text: String,
}

/// One dimension's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DimensionSummary {
    /// Which dimension.
    pub dimension: Dimension,
    /// Label.
    pub label: String,
    /// Mean item score, 0–4.
    pub score: f64,
    /// IRT ability estimate.
    pub theta: f64,
    /// Its standard error.
    pub se: f64,
}

/// A highlighted stretch of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Highlight {
    /// Byte range in the answer.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
    /// Earned (true) or lost (false) a point.
    pub positive: bool,
    /// Why.
    pub note: String,
}

/// One question and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemReport {
    /// Item id.
    pub item_id: String,
    /// Competency name.
    pub competency: String,
    /// Difficulty band.
    pub band: String,
    /// The question.
    pub question: String,
    /// All answer text for the item (main answer and probe answers).
    pub answer: String,
    /// Probe questions asked.
    pub probes: Vec<String>,
    /// Scores 0–4: knowledge, reasoning, clarity.
    pub scores: [u8; 3],
    /// Confidence of each score, 0–1.
    pub confidence: [f64; 3],
    /// Key concepts named.
    pub concepts_found: Vec<String>,
    /// Key concepts missing.
    pub concepts_missing: Vec<String>,
    /// Red flags raised (claims).
    pub red_flags: Vec<String>,
    /// Any red flag major.
    pub major_red_flag: bool,
    /// Evidence highlights in `answer`.
    pub highlights: Vec<Highlight>,
    /// "I don't know".
    pub skipped: bool,
    /// Level descriptor matching the knowledge score.
    pub level: String,
    /// Who scored this item: the deterministic scorer, or the LLM grader (or its fallback).
    pub graded_by: String,
    /// Overall ability after this item.
    pub theta_after: f64,
    /// Its standard error.
    pub se_after: f64,
}

/// One transcript line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Interviewer's words.
    pub question: String,
    /// Applicant's words.
    pub answer: String,
    /// When asked (seconds from start).
    pub asked_at_s: f64,
    /// When answered.
    pub answered_at_s: f64,
    /// Typed rather than spoken.
    pub typed: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Shape version.
    pub version: u32,
    /// Interview id.
    pub interview_id: String,
    /// Discipline id.
    pub discipline: String,
    /// Discipline name.
    pub discipline_name: String,
    /// When generated (passed in; the engine reads no clock).
    pub generated_at: String,
    /// Recommendation.
    pub verdict: Verdict,
    /// Why.
    pub reasons: Vec<String>,
    /// Weighted overall score, 0–4.
    pub overall_score: f64,
    /// Overall ability.
    pub overall_theta: f64,
    /// Its standard error.
    pub overall_se: f64,
    /// Per dimension.
    pub dimensions: Vec<DimensionSummary>,
    /// Per item.
    pub items: Vec<ItemReport>,
    /// Every turn.
    pub transcript: Vec<TranscriptLine>,
    /// Interview length, seconds.
    pub duration_s: f64,
    /// Why it ended.
    pub stop_reason: Option<StopReason>,
    /// Recording quality problems.
    pub audio_flags: Vec<QualityFlag>,
    /// Some answers were typed (accommodation).
    pub typed_answers: bool,
    /// Who scored: "deterministic" or the LLM grader with its model.
    pub grader: String,
    /// Draft feedback.
    pub feedback: Vec<FeedbackDraft>,
}

/// Context the interview does not know.
#[derive(Debug, Clone, Default)]
pub struct ReportMeta {
    /// Interview id.
    pub interview_id: String,
    /// Timestamp string.
    pub generated_at: String,
    /// Recording quality of the whole interview.
    pub quality: Option<QualityReport>,
    /// Who scored, overall (e.g. "LLM grader (model)").
    pub grader: Option<String>,
    /// Per scored item (same order as the interview's results): a score from another grader
    /// that replaces the deterministic one in the report, and who gave it. The adaptive item
    /// selection during the interview always used the deterministic score.
    pub regraded: Vec<Option<(AnswerScore, String)>>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Builds the report of a (finished or interrupted) interview.
pub fn build_report(iv: &Interview<'_>, meta: &ReportMeta) -> Report {
    let rubric = iv.rubric();
    let results = iv.results();
    let abilities = iv.dimension_abilities();
    let score_of = |i: usize| -> &AnswerScore {
        match meta.regraded.get(i) {
            Some(Some((score, _))) => score,
            _ => &results[i].score,
        }
    };
    let graded_by = |i: usize| -> String {
        match meta.regraded.get(i) {
            Some(Some((_, by))) => by.clone(),
            _ => "deterministic scorer".into(),
        }
    };
    let dimensions: Vec<DimensionSummary> = Dimension::ALL
        .iter()
        .map(|&d| DimensionSummary {
            dimension: d,
            label: d.label().into(),
            score: mean((0..results.len()).map(|i| f64::from(score_of(i).dimension(d).score)))
                .unwrap_or(0.0),
            theta: abilities[d.index()].theta,
            se: abilities[d.index()].se,
        })
        .collect();
    // Overall: items weighted by their competency's weight and dimension loadings.
    let (mut num, mut den) = (0.0, 0.0);
    for (i, r) in results.iter().enumerate() {
        let comp = &rubric.competencies[rubric.items[r.item].competency];
        let s = if r.skipped {
            0.0
        } else {
            score_of(i).weighted(comp.dimensions)
        };
        num += comp.weight * s;
        den += comp.weight;
    }
    let overall_score = if den > 0.0 { num / den } else { 0.0 };
    let ability = iv.ability();

    let items: Vec<ItemReport> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let it = &rubric.items[r.item];
            let s = score_of(i);
            let mut highlights: Vec<Highlight> = s
                .dimensions
                .iter()
                .flat_map(|d| d.evidence.iter())
                .filter_map(|e| {
                    let (start, end) = e.span?;
                    (end <= r.answer.len()
                        && start < end
                        && r.answer.is_char_boundary(start)
                        && r.answer.is_char_boundary(end))
                    .then(|| Highlight {
                        start,
                        end,
                        positive: e.effect >= 0.0 && e.kind != EvidenceKind::RedFlag,
                        note: format!("{:?}: {}", e.kind, e.text),
                    })
                })
                .collect();
            highlights.sort_by_key(|h| (h.start, h.end));
            highlights.dedup_by(|b, a| b.start < a.end);
            let knowledge = s.dimension(Dimension::Knowledge).score;
            ItemReport {
                item_id: it.id.clone(),
                competency: rubric.competencies[it.competency].name.clone(),
                band: format!("{:?}", it.band).to_lowercase(),
                question: it.prompt.clone(),
                answer: r.answer.clone(),
                probes: r
                    .probes
                    .iter()
                    .map(|&p| it.probes[p].text.clone())
                    .collect(),
                scores: [
                    s.dimensions[0].score,
                    s.dimensions[1].score,
                    s.dimensions[2].score,
                ],
                confidence: [
                    s.dimensions[0].confidence,
                    s.dimensions[1].confidence,
                    s.dimensions[2].confidence,
                ],
                concepts_found: s
                    .concepts_found
                    .iter()
                    .map(|&c| it.concepts[c].term.clone())
                    .collect(),
                concepts_missing: s
                    .concepts_missing
                    .iter()
                    .map(|&c| it.concepts[c].term.clone())
                    .collect(),
                red_flags: s
                    .red_flags
                    .iter()
                    .map(|&f| it.red_flags[f].claim.clone())
                    .collect(),
                major_red_flag: s
                    .red_flags
                    .iter()
                    .any(|&f| it.red_flags[f].severity == Severity::Major),
                highlights,
                skipped: r.skipped,
                level: it.levels[usize::from(knowledge.min(4))].clone(),
                graded_by: graded_by(i),
                theta_after: r.ability_after.theta,
                se_after: r.ability_after.se,
            }
        })
        .collect();

    let transcript: Vec<TranscriptLine> = iv
        .turns()
        .iter()
        .map(|t| TranscriptLine {
            question: t.question_text.clone(),
            answer: t.answer.clone(),
            asked_at_s: t.asked_at_s,
            answered_at_s: t.answered_at_s,
            typed: t.typed,
        })
        .collect();
    let typed_answers = iv.turns().iter().any(|t| t.typed);
    let duration_s = iv.turns().last().map(|t| t.answered_at_s).unwrap_or(0.0)
        - iv.turns().first().map(|t| t.asked_at_s).unwrap_or(0.0);
    let audio_flags = meta
        .quality
        .as_ref()
        .map(|q| q.flags.clone())
        .unwrap_or_default();

    let pass = rubric.pass;
    let mut reasons = Vec::new();
    let majors: Vec<&ItemReport> = items.iter().filter(|i| i.major_red_flag).collect();
    let min_dim = dimensions
        .iter()
        .map(|d| d.score)
        .fold(f64::INFINITY, f64::min);
    let answered = items.iter().filter(|i| !i.skipped).count();
    let verdict = if answered < 3 {
        reasons.push(format!(
            "only {answered} question(s) answered; too little to judge"
        ));
        Verdict::Incomplete
    } else {
        reasons.push(format!(
            "overall {overall_score:.2} of 4 (pass mark {:.2}); ability θ = {:.2} ± {:.2}",
            pass.overall, ability.theta, ability.se
        ));
        for d in &dimensions {
            if d.score < pass.min_dimension {
                reasons.push(format!(
                    "{} {:.2} is below the minimum {:.2}",
                    d.label, d.score, pass.min_dimension
                ));
            }
        }
        for m in &majors {
            reasons.push(format!(
                "major red flag on {}: {}",
                m.item_id,
                m.red_flags.join("; ")
            ));
        }
        let clears =
            overall_score >= pass.overall && min_dim >= pass.min_dimension && majors.is_empty();
        // Within about one standard error of the mark (0.35 on the 0–4 scale) is borderline.
        let margin = 0.35;
        if clears
            && overall_score >= pass.overall + margin
            && min_dim >= pass.min_dimension + margin / 2.0
        {
            Verdict::Pass
        } else if clears || (overall_score >= pass.overall - margin && majors.is_empty()) {
            reasons.push("close to the pass mark: read the transcript".into());
            Verdict::Borderline
        } else {
            Verdict::Fail
        }
    };

    let mut feedback = Vec::new();
    if dimensions[Dimension::Clarity.index()].score < pass.min_dimension {
        feedback.push(FeedbackDraft {
            category: FeedbackCategory::CommunicationClarity,
            text: "Answers were hard to follow at times; structure them (situation, steps, reasons) and finish each thought before moving on.".into(),
        });
    }
    let missing: Vec<String> = items
        .iter()
        .flat_map(|i| i.concepts_missing.iter().take(2).cloned())
        .take(6)
        .collect();
    if dimensions[Dimension::Knowledge.index()].score < pass.overall
        || items.iter().filter(|i| i.scores[0] <= 1).count() >= 2
    {
        feedback.push(FeedbackDraft {
            category: FeedbackCategory::InsufficientDetail,
            text: if missing.is_empty() {
                "Several answers stayed general; name the specific tests, thresholds, rules or standards you would apply.".into()
            } else {
                format!("Several answers stayed general; key points not mentioned included: {}.", missing.join(", "))
            },
        });
    }
    if !audio_flags.is_empty() {
        feedback.push(FeedbackDraft {
            category: FeedbackCategory::TechnicalIssues,
            text: format!(
                "The recording had problems: {}.",
                audio_flags
                    .iter()
                    .map(|f| f.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }

    Report {
        version: REPORT_VERSION,
        interview_id: meta.interview_id.clone(),
        discipline: rubric.id.clone(),
        discipline_name: rubric.name.clone(),
        generated_at: meta.generated_at.clone(),
        verdict,
        reasons,
        overall_score,
        overall_theta: ability.theta,
        overall_se: ability.se,
        dimensions,
        items,
        transcript,
        duration_s,
        stop_reason: iv.stop_reason(),
        audio_flags,
        typed_answers,
        grader: meta
            .grader
            .clone()
            .unwrap_or_else(|| "deterministic".into()),
        feedback,
    }
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn highlighted(answer: &str, highlights: &[Highlight]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    for h in highlights {
        if h.start < pos || h.end > answer.len() {
            continue;
        }
        out.push_str(&escape(&answer[pos..h.start]));
        let class = if h.positive { "good" } else { "bad" };
        let _ = write!(
            out,
            "<mark class=\"{class}\" title=\"{}\">{}</mark>",
            escape(&h.note),
            escape(&answer[h.start..h.end])
        );
        pos = h.end;
    }
    out.push_str(&escape(&answer[pos..]));
    out
}

/// Bar chart of the three dimension scores (0–4) with the pass line.
fn dimension_chart(report: &Report, pass_min: f64) -> String {
    let (w, bar_h, gap) = (420.0, 26.0, 12.0);
    let x0 = 170.0;
    let scale = (w - x0 - 20.0) / 4.0;
    let h = report.dimensions.len() as f64 * (bar_h + gap) + 30.0;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"Scores by dimension\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">"
    );
    for (i, d) in report.dimensions.iter().enumerate() {
        let y = 10.0 + i as f64 * (bar_h + gap);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.0}\" font-size=\"12\">{}</text><rect x=\"{x0}\" y=\"{y}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"#3b6ea5\"/><text x=\"{:.1}\" y=\"{:.0}\" font-size=\"12\">{:.1}</text>",
            y + 17.0,
            escape(&d.label),
            d.score * scale,
            x0 + d.score * scale + 4.0,
            y + 17.0,
            d.score
        );
    }
    let px = x0 + pass_min * scale;
    let _ = write!(
        svg,
        "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"4\" y2=\"{:.0}\" stroke=\"#b33\" stroke-dasharray=\"4 3\"/><text x=\"{px:.1}\" y=\"{:.0}\" font-size=\"10\" fill=\"#b33\">minimum {pass_min:.1}</text></svg>",
        h - 18.0,
        h - 6.0
    );
    svg
}

/// The ability estimate after each item with a ±1 SE band.
fn ability_chart(report: &Report) -> String {
    let (w, h) = (420.0, 160.0);
    let n = report.items.len().max(1);
    let x = |i: usize| 30.0 + (w - 40.0) * i as f64 / n.max(2).saturating_sub(1).max(1) as f64;
    let y = |t: f64| h / 2.0 - t.clamp(-3.0, 3.0) * (h / 2.0 - 10.0) / 3.0;
    let mut band_top = String::new();
    let mut band_bottom = Vec::new();
    let mut line = String::new();
    for (i, it) in report.items.iter().enumerate() {
        let _ = write!(
            band_top,
            "{:.1},{:.1} ",
            x(i),
            y(it.theta_after + it.se_after)
        );
        band_bottom.push(format!(
            "{:.1},{:.1}",
            x(i),
            y(it.theta_after - it.se_after)
        ));
        let _ = write!(line, "{:.1},{:.1} ", x(i), y(it.theta_after));
    }
    band_bottom.reverse();
    format!(
        "<svg role=\"img\" aria-label=\"Ability estimate after each question\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <line x1=\"30\" x2=\"{w}\" y1=\"{mid}\" y2=\"{mid}\" stroke=\"#ccc\"/>\
         <text x=\"0\" y=\"{mid}\" font-size=\"10\">θ=0</text>\
         <polygon points=\"{band_top}{bottom}\" fill=\"#3b6ea5\" opacity=\"0.2\"/>\
         <polyline points=\"{line}\" fill=\"none\" stroke=\"#3b6ea5\" stroke-width=\"2\"/></svg>",
        mid = h / 2.0,
        bottom = band_bottom.join(" ")
    )
}

/// Renders the report as one standalone HTML page.
pub fn render_html(report: &Report, pass_min: f64) -> String {
    let mut h = String::new();
    let verdict = format!("{:?}", report.verdict);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Interview report {id}</title><style>\
body{{font-family:system-ui,sans-serif;max-width:920px;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}}\
.verdict{{font-size:1.4rem;font-weight:700}} .Pass{{color:#1d7a3a}} .Fail{{color:#b33}} .Borderline,.Incomplete{{color:#a66b00}}\
table{{border-collapse:collapse}} td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}}\
mark.good{{background:#d7f0dc}} mark.bad{{background:#f7d4d4}} .item{{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;margin:1rem 0}}\
.muted{{color:#666;font-size:.9rem}} .flag{{color:#b33;font-weight:600}}</style></head><body>",
        id = escape(&report.interview_id)
    );
    let _ = write!(
        h,
        "<h1>{} — interview report</h1><p class=\"muted\">Interview {} · generated {} · {:.0} min · ended: {} · scored by {}{}</p>",
        escape(&report.discipline_name),
        escape(&report.interview_id),
        escape(&report.generated_at),
        report.duration_s / 60.0,
        report
            .stop_reason
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "in progress".into()),
        escape(&report.grader),
        if report.typed_answers {
            " · <strong>some answers were typed (accommodation)</strong>"
        } else {
            ""
        }
    );
    let _ = write!(
        h,
        "<h2>Recommendation</h2><p class=\"verdict {verdict}\">{verdict}</p><ul>"
    );
    for r in &report.reasons {
        let _ = write!(h, "<li>{}</li>", escape(r));
    }
    let _ = write!(
        h,
        "</ul><h2>Scores</h2><table><tr><th>Dimension</th><th>Score (0–4)</th><th>Ability θ ± SE</th></tr>"
    );
    for d in &report.dimensions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2} ± {:.2}</td></tr>",
            escape(&d.label),
            d.score,
            d.theta,
            d.se
        );
    }
    let _ = write!(
        h,
        "<tr><th>Overall</th><th>{:.2}</th><th>{:.2} ± {:.2}</th></tr></table>{}{}",
        report.overall_score,
        report.overall_theta,
        report.overall_se,
        dimension_chart(report, pass_min),
        ability_chart(report)
    );
    if !report.audio_flags.is_empty() {
        let _ = write!(h, "<h2>Recording quality</h2><ul>");
        for f in &report.audio_flags {
            let _ = write!(h, "<li class=\"flag\">{}</li>", escape(f.describe()));
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(h, "<h2>Questions</h2>");
    for (i, it) in report.items.iter().enumerate() {
        let _ = write!(
            h,
            "<section class=\"item\"><h3>{}. {}</h3><p class=\"muted\">{} · {} · knowledge {} · reasoning {} · clarity {}</p><p>{}</p>",
            i + 1,
            escape(&it.question),
            escape(&it.competency),
            escape(&it.band),
            it.scores[0],
            it.scores[1],
            it.scores[2],
            if it.skipped {
                "<em>Skipped (“I don't know”).</em>".to_string()
            } else {
                highlighted(&it.answer, &it.highlights)
            }
        );
        for p in &it.probes {
            let _ = write!(h, "<p class=\"muted\">Follow-up: {}</p>", escape(p));
        }
        let _ = write!(
            h,
            "<p><strong>Named:</strong> {}<br><strong>Missing:</strong> {}</p>",
            escape(&it.concepts_found.join(", ")),
            escape(&it.concepts_missing.join(", "))
        );
        for f in &it.red_flags {
            let _ = write!(h, "<p class=\"flag\">Red flag: {}</p>", escape(f));
        }
        let _ = write!(
            h,
            "<p class=\"muted\">Level: {} · scored by {}</p></section>",
            escape(&it.level),
            escape(&it.graded_by)
        );
    }
    let _ = write!(h, "<h2>Draft feedback</h2><ul>");
    for f in &report.feedback {
        let _ = write!(
            h,
            "<li><strong>{:?}</strong>: {}</li>",
            f.category,
            escape(&f.text)
        );
    }
    let _ = write!(h, "</ul><h2>Transcript</h2>");
    for t in &report.transcript {
        let _ = write!(
            h,
            "<p><span class=\"muted\">{:02}:{:02}</span> <strong>Interviewer:</strong> {}<br><strong>Applicant{}:</strong> {}</p>",
            (t.asked_at_s / 60.0) as u64,
            (t.asked_at_s % 60.0) as u64,
            escape(&t.question),
            if t.typed { " (typed)" } else { "" },
            escape(&t.answer)
        );
    }
    let _ = write!(h, "</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interview::{Event, InterviewConfig};
    use crate::rubric::Rubric;
    use std::path::Path;

    #[test]
    fn report_is_versioned_escaped_and_self_contained() {
        let r =
            Rubric::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml"))
                .unwrap();
        let mut iv = Interview::new(
            &r,
            InterviewConfig {
                seed: 1,
                ..InterviewConfig::default()
            },
        );
        iv.handle(Event::Start { at_s: 0.0 });
        let mut t = 0.0;
        while !iv.is_finished() && t < 3000.0 {
            t += 100.0;
            iv.handle(Event::Answer {
                text: "I would <script>alert(1)</script> order an ECG and troponin because it rules out a heart attack".into(),
                at_s: t,
                speech: None,
                typed: true,
            });
        }
        let report = build_report(
            &iv,
            &ReportMeta {
                interview_id: "iv-1".into(),
                generated_at: "2026-11-27T12:00:00Z".into(),
                ..ReportMeta::default()
            },
        );
        assert_eq!(report.version, REPORT_VERSION);
        assert!(report.typed_answers);
        assert!(!report.items.is_empty());
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.items.len(), report.items.len());
        let html = render_html(&report, r.pass.min_dimension);
        assert!(!html.contains("<script>"), "answer text must be escaped");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));
    }
}
