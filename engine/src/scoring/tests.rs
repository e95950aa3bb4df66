//! Unit tests of the scorer on a small hand-built item.

use super::*;
use crate::rubric::{Band, Concept, Probe, ProbeWhen, RedFlag};

fn concept(term: &str, aliases: &[&str], weight: f64) -> Concept {
    Concept {
        term: term.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        weight,
    }
}

fn flag(claim: &str, phrases: &[&str], severity: Severity) -> RedFlag {
    RedFlag {
        claim: claim.into(),
        phrases: phrases.iter().map(|s| s.to_string()).collect(),
        severity,
    }
}

fn chest_pain() -> Item {
    Item {
        id: "med-chest-pain-ed".into(),
        competency: 0,
        band: Band::Core,
        prompt: "A 58-year-old man arrives at the emergency department with forty minutes of \
                 crushing central chest pain spreading to his left arm. Walk me through your \
                 first ten minutes."
            .into(),
        rephrasing: "A middle-aged man has had severe chest pain going down his left arm for \
                     forty minutes. What do you do in the first ten minutes after he arrives?"
            .into(),
        expected_seconds: (60.0, 180.0),
        discrimination: 1.3,
        thresholds: [-1.2, -0.4, 0.3, 1.1],
        levels: [
            "0: No structured approach; no ECG, or does not consider an acute coronary syndrome."
                .into(),
            "1: Mentions an ECG or troponin but gives no timing, no treatment and no differential."
                .into(),
            "2: ECG within ten minutes, aspirin, troponin and analgesia.".into(),
            "3: 12-lead ECG, aspirin 300 mg, troponin, oxygen only if saturation is low, cath \
             lab for primary PCI, considers aortic dissection and PE."
                .into(),
            "4: As 3, plus reperfusion time targets and serial ECGs.".into(),
        ],
        concepts: vec![
            concept(
                "12-lead ECG",
                &["ECG", "EKG", "electrocardiogram", "e c g", "twelve lead"],
                3.0,
            ),
            concept(
                "troponin",
                &["high sensitivity troponin", "trop", "troponins"],
                2.0,
            ),
            concept("aspirin", &["300 mg aspirin", "asa"], 2.0),
            concept(
                "ST elevation and primary PCI",
                &["STEMI", "st elevation", "primary PCI", "pci", "cath lab"],
                3.0,
            ),
            concept(
                "Aortic dissection and PE in the differential",
                &[
                    "aortic dissection",
                    "dissection",
                    "pulmonary embolism",
                    "PE",
                    "p e",
                ],
                2.0,
            ),
            concept(
                "Oxygen only if hypoxic",
                &[
                    "oxygen only if",
                    "hypoxic",
                    "hypoxia",
                    "saturation below 90",
                ],
                1.5,
            ),
        ],
        red_flags: vec![
            flag(
                "Discharge without an ECG",
                &["send him home", "no need for an ecg"],
                Severity::Major,
            ),
            flag(
                "Waits for troponin before activating reperfusion in STEMI",
                &["wait for the troponin", "troponin first then decide"],
                Severity::Major,
            ),
            flag(
                "Gives oxygen to every chest pain patient",
                &[
                    "every chest pain patient needs oxygen",
                    "put him on oxygen straight away",
                ],
                Severity::Minor,
            ),
        ],
        probes: vec![Probe {
            when: ProbeWhen::Shallow,
            concept: None,
            text: "What are the time targets for reperfusion?".into(),
        }],
    }
}

const STRONG: &str = "Okay, so this is an acute coronary syndrome until proven otherwise. \
    In the first ten minutes I want a twelve lead ECG done and read, a monitor, IV access, and \
    bloods including a high sensitivity troponin. He gets aspirin, three hundred milligrams \
    chewed, unless he's allergic. Oxygen only if his saturation is low, because it doesn't help \
    if he isn't hypoxic. If the ECG shows ST elevation, that's a STEMI, and I call the cath lab \
    for primary PCI, ideally within ninety minutes. If there's no ST elevation, I repeat the ECG \
    and do serial troponins. I'd keep the differential open and check the blood pressure in \
    both arms, because an aortic dissection can look just like this, and I'd also think about \
    a pulmonary embolism.";

const WEAK: &str = "I would, um, put him on oxygen straight away, because every chest pain \
    patient needs oxygen. Then some pain relief, and maybe a chest X ray. If it doesn't settle, \
    we could call cardiology, I guess, and see what they think.";

fn found(item: &Item, answer: &str, concept: usize) -> bool {
    score_answer(item, answer, None)
        .concepts_found
        .contains(&concept)
}

#[test]
fn alias_matches() {
    let item = chest_pain();
    assert!(found(&item, "First an EKG.", 0));
    assert!(found(&item, "I'd get an electrocardiogram.", 0));
    assert!(!found(&item, "I'd get a chest X ray.", 0));
}

#[test]
fn stemming_matches_inflections_and_spelling() {
    let item = chest_pain();
    assert!(found(&item, "Serial troponins over three hours.", 1));
    let mut item = chest_pain();
    item.concepts[3].aliases.push("catheterization".into());
    assert!(found(&item, "Urgent cardiac catheterisation.", 3));
}

#[test]
fn fuzzy_matches_misspellings() {
    let item = chest_pain();
    assert!(found(&item, "Send a tropanin now.", 1));
    assert!(found(&item, "Check for an aortic disection.", 4));
}

#[test]
fn phonetic_and_split_words_match() {
    let item = chest_pain();
    assert!(found(&item, "Send a trope onin now.", 1));
    let mut item = chest_pain();
    item.concepts[2].aliases.push("acetylsalicylic acid".into());
    assert!(found(&item, "Give acetyl salicylic acid.", 2));
}

#[test]
fn spaced_acronyms_match() {
    let item = chest_pain();
    assert!(found(&item, "A twelve lead, sorry, an e c g first.", 0));
    assert!(found(&item, "Think of a P E as well.", 4));
}

#[test]
fn short_aliases_match_only_whole_words() {
    let item = chest_pain();
    // "pe", "asa", "trop" and "pci" must not match inside or across other words.
    assert!(!found(&item, "He ate a pear, and a grape.", 4));
    assert!(!found(&item, "As a rule he is fine.", 2));
    assert!(!found(&item, "Tropical travel is irrelevant.", 1));
    assert!(!found(&item, "Special tests later.", 3));
    assert!(found(&item, "Give ASA now.", 2));
}

#[test]
fn red_flag_found_and_negation_skipped() {
    let item = chest_pain();
    let s = score_answer(&item, "Honestly I would send him home with antacids.", None);
    assert_eq!(s.red_flags, [0]);
    for negated in [
        "I would never send him home without an ECG.",
        "I don't send him home.",
        "There is no reason to wait for the troponin if it's a STEMI.",
        "You wouldn't wait for the troponin.",
    ] {
        let s = score_answer(&item, negated, None);
        assert!(s.red_flags.is_empty(), "{negated}: {:?}", s.red_flags);
    }
    // Dismissed right after it is said.
    let s = score_answer(&item, "Sending him home isn't safe here.", None);
    assert!(s.red_flags.is_empty(), "{:?}", s.red_flags);
    // A negation in an earlier clause does not cancel the claim.
    let s = score_answer(&item, "It's not cardiac, so I'd send him home.", None);
    assert_eq!(s.red_flags, [0]);
}

#[test]
fn major_red_flag_caps_knowledge() {
    let item = chest_pain();
    let answer = format!("{STRONG} But honestly, I'd wait for the troponin before the cath lab.");
    let s = score_answer(&item, &answer, None);
    assert_eq!(s.red_flags, [1]);
    assert!(s.dimension(Dimension::Knowledge).raw <= 1.0);
    assert!(
        s.dimension(Dimension::Knowledge)
            .evidence
            .iter()
            .any(|e| e.kind == EvidenceKind::RedFlag && e.effect < 0.0)
    );
}

#[test]
fn strong_beats_weak_on_every_dimension() {
    let item = chest_pain();
    let strong = score_answer(&item, STRONG, None);
    let weak = score_answer(&item, WEAK, None);
    for d in Dimension::ALL {
        assert!(
            strong.dimension(d).raw > weak.dimension(d).raw,
            "{d:?}: {} vs {}",
            strong.dimension(d).raw,
            weak.dimension(d).raw
        );
    }
    assert!(strong.coverage > 0.8, "{}", strong.coverage);
    assert!(!strong.shallow);
    assert!(weak.shallow);
    assert_eq!(weak.red_flags, [2]);
    assert!(strong.dimension(Dimension::Knowledge).score >= 3);
    assert!(weak.dimension(Dimension::Knowledge).score <= 1);
}

#[test]
fn off_topic_answer_scores_low_everywhere() {
    let item = chest_pain();
    let answer = "Well, I have always loved football. Our team trains every Saturday, first \
        we warm up, then we run drills, and finally we play a short match, because practice \
        matters. If it rains, we move indoors to the gym. My favourite player is the goalkeeper, \
        who is calm and organised, and the coach says consistency beats talent.";
    let s = score_answer(&item, answer, None);
    for d in Dimension::ALL {
        assert!(s.dimension(d).raw <= 1.0, "{d:?}: {}", s.dimension(d).raw);
    }
    assert!(s.relevance < 0.2, "{}", s.relevance);
    assert!(s.concepts_found.is_empty());
}

#[test]
fn repeating_the_prompt_earns_nothing() {
    let mut item = chest_pain();
    item.concepts[5]
        .aliases
        .push("crushing central chest pain".into());
    let s = score_answer(
        &item,
        "So a man arrives with forty minutes of crushing central chest pain spreading to his \
         left arm.",
        None,
    );
    assert!(!s.concepts_found.contains(&5));
    let s = score_answer(&item, "The crushing central chest pain worries me.", None);
    assert!(s.concepts_found.contains(&5));
}

#[test]
fn missing_concepts_heaviest_first() {
    let item = chest_pain();
    let s = score_answer(&item, "Aspirin and a troponin.", None);
    assert_eq!(s.concepts_found, [1, 2]);
    assert_eq!(s.concepts_missing, [0, 3, 4, 5]);
    let k = s.dimension(Dimension::Knowledge);
    let missing: Vec<&str> = k
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::ConceptMissing)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(missing[0], "12-lead ECG");
}

#[test]
fn evidence_spans_quote_the_answer() {
    let item = chest_pain();
    let s = score_answer(&item, STRONG, None);
    let mut quotes = 0;
    for d in &s.dimensions {
        for e in &d.evidence {
            if let Some((a, b)) = e.span {
                let quoted = &STRONG[a..b];
                assert_eq!(e.text, quoted);
                quotes += 1;
            }
        }
    }
    assert!(quotes > 10);
}

#[test]
fn clarity_reads_fillers_restarts_and_speech_rate() {
    let item = chest_pain();
    let messy = "Um, so, uh, I I would, um, get the the ECG, uh, and, um, like, the, uh, \
        troponin, you know, and, um, aspirin, uh, I mean, and then, um, the cath lab, uh, if, \
        um, it's a STEMI, uh, and, um, think about a, uh, dissection, you know.";
    let clean = score_answer(&item, STRONG, None);
    let s = score_answer(&item, messy, None);
    assert!(s.dimension(Dimension::Clarity).raw < clean.dimension(Dimension::Clarity).raw - 1.0);
    assert!(s.unclear);

    let words = STRONG.split_whitespace().count();
    let fluent = SpeechFeatures {
        duration_s: 62.0,
        speech_s: 58.0,
        pauses: vec![(20.0, 21.5), (40.0, 42.5)],
        words,
    };
    let rushed = SpeechFeatures {
        duration_s: 62.0,
        speech_s: 25.0,
        pauses: vec![(5.0, 12.0), (20.0, 28.0), (40.0, 50.0), (52.0, 58.0)],
        words,
    };
    let a = score_answer(&item, STRONG, Some(&fluent));
    let b = score_answer(&item, STRONG, Some(&rushed));
    assert!(
        a.dimension(Dimension::Clarity).raw > b.dimension(Dimension::Clarity).raw + 1.0,
        "{} vs {}",
        a.dimension(Dimension::Clarity).raw,
        b.dimension(Dimension::Clarity).raw
    );
    assert!(
        a.dimension(Dimension::Clarity).confidence > clean.dimension(Dimension::Clarity).confidence
    );
}

#[test]
fn short_answers_are_shallow_and_less_certain() {
    let item = chest_pain();
    let short = score_answer(&item, "ECG and troponin.", None);
    let long = score_answer(&item, STRONG, None);
    assert!(short.shallow);
    for d in Dimension::ALL {
        assert!(short.dimension(d).confidence < long.dimension(d).confidence);
    }
}

#[test]
fn empty_answer_scores_zero() {
    let item = chest_pain();
    for answer in ["", "   ", "um, uh..."] {
        let s = score_answer(&item, answer, None);
        assert_eq!(s.word_count, 0);
        assert!(s.shallow && s.unclear);
        assert_eq!(s.overall_raw, 0.0);
        assert!(s.dimensions.iter().all(|d| d.score == 0));
    }
}

#[test]
fn deterministic_and_cached() {
    let item = chest_pain();
    let a = serde_json::to_string(&score_answer(&item, STRONG, None)).expect("serializable");
    let b = serde_json::to_string(&score_answer(&item, STRONG, None)).expect("serializable");
    assert_eq!(a, b);
    let mut scorer = Scorer::new();
    let c = serde_json::to_string(&scorer.score(&item, STRONG, None)).expect("serializable");
    assert_eq!(a, c);
    scorer.score(&item, WEAK, None);
    assert_eq!(scorer.len(), 1);
    // A changed item under the same id is recompiled.
    let mut changed = item.clone();
    changed.concepts[0].aliases.push("rhythm strip".into());
    assert!(
        scorer
            .score(&changed, "A rhythm strip.", None)
            .concepts_found
            .contains(&0)
    );
    assert_eq!(scorer.matcher(&changed).item_id(), "med-chest-pain-ed");
}

#[test]
fn weighted_overall() {
    let item = chest_pain();
    let s = score_answer(&item, STRONG, None);
    assert!((s.weighted(DEFAULT_WEIGHTS) - s.overall_raw).abs() < 1e-3);
    assert_eq!(s.weighted([0.0; 3]), 0.0);
    assert!((s.weighted([1.0, 0.0, 0.0]) - s.dimension(Dimension::Knowledge).raw).abs() < 1e-9);
}
