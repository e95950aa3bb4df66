//! Simulated interviews on the real rubrics: adaptive selection must estimate ability well
//! (correlation with the truth) and need fewer items than random selection under the same
//! stop rule. Run with `--nocapture` to see the figures.

use std::path::Path;
use std::time::Instant;

use nextmark_engine::irt::{
    AbilityPosterior, ItemParams, SelectionConfig, SimResult, StopRule, select_next,
    simulate_applicant,
};
use nextmark_engine::rubric::Rubric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const APPLICANTS: usize = 500;

const RULE: StopRule = StopRule {
    se_target: 0.40,
    min_items: 4,
    max_items: 14,
};

fn load(name: &str) -> Rubric {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rubrics")
        .join(format!("{name}.toml"));
    match Rubric::load(&path) {
        Ok(r) => r,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// A standard normal draw (Box-Muller), so no extra distribution crate is needed.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], keeps ln finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Summary of one selection strategy over all simulated applicants.
struct Summary {
    correlation: f64,
    mean_items: f64,
    reached: f64,
    rmse: f64,
}

fn summarize(truth: &[f64], results: &[SimResult]) -> Summary {
    let estimates: Vec<f64> = results.iter().map(|r| r.estimate.theta).collect();
    let n = results.len() as f64;
    Summary {
        correlation: pearson(&estimates, truth),
        mean_items: results.iter().map(|r| r.items_used as f64).sum::<f64>() / n,
        reached: results.iter().filter(|r| r.reached_target).count() as f64 / n,
        rmse: (estimates
            .iter()
            .zip(truth)
            .map(|(e, t)| (e - t) * (e - t))
            .sum::<f64>()
            / n)
            .sqrt(),
    }
}

fn simulate(name: &str, seed: u64) {
    let rubric = load(name);
    let cfg = SelectionConfig::default();
    let mut truth_rng = ChaCha8Rng::seed_from_u64(seed);
    let truth: Vec<f64> = (0..APPLICANTS)
        .map(|_| standard_normal(&mut truth_rng))
        .collect();
    // Each strategy gets its own response stream; both see the same applicants.
    let run = |adaptive: bool, stream: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream);
        let results: Vec<SimResult> = truth
            .iter()
            .map(|&t| simulate_applicant(&rubric, t, &RULE, adaptive, &cfg, &mut rng))
            .collect();
        summarize(&truth, &results)
    };
    let adaptive = run(true, 0xada);
    let random = run(false, 0x5a5);
    println!(
        "{name}: {APPLICANTS} applicants, stop at SE <= {} ({}..={} items)",
        RULE.se_target, RULE.min_items, RULE.max_items
    );
    for (label, s) in [("adaptive", &adaptive), ("random", &random)] {
        println!(
            "  {label:8} correlation {:.3}  rmse {:.3}  mean items {:.2}  reached target {:.1}%",
            s.correlation,
            s.rmse,
            s.mean_items,
            100.0 * s.reached
        );
    }
    assert!(
        adaptive.correlation >= 0.9,
        "{name}: adaptive correlation {:.3} < 0.9",
        adaptive.correlation
    );
    assert!(
        adaptive.reached >= 0.8,
        "{name}: only {:.1}% of adaptive interviews reached SE {}",
        100.0 * adaptive.reached,
        RULE.se_target
    );
    assert!(
        adaptive.mean_items < random.mean_items,
        "{name}: adaptive used {:.2} items on average, random {:.2}",
        adaptive.mean_items,
        random.mean_items
    );
    assert!(
        adaptive.reached >= random.reached,
        "{name}: adaptive reached the target less often ({:.3}) than random ({:.3})",
        adaptive.reached,
        random.reached
    );
}

#[test]
fn adaptive_beats_random_on_medicine() {
    simulate("medicine", 0x6d65_6469_6369_6e65);
}

#[test]
fn adaptive_beats_random_on_law() {
    simulate("law", 0x006c_6177);
}

/// Prints the cost of one posterior update and one selection (not asserted: the machine may be
/// busy and the crate may be unoptimised).
#[test]
fn update_and_selection_cost() {
    let rubric = load("medicine");
    let cfg = SelectionConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let params: Vec<ItemParams> = rubric.items.iter().map(ItemParams::from).collect();
    let rounds = 2000;

    let mut post = AbilityPosterior::new(0.0, 1.0);
    let start = Instant::now();
    for i in 0..rounds {
        if i % 14 == 0 {
            post.reset();
        }
        post.update(&params[i % params.len()], (i % 5) as u8);
    }
    let theta = post.estimate().theta;
    let update_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;

    let administered: Vec<usize> = (0..6).map(|i| i * 5).collect();
    let start = Instant::now();
    let mut picks = 0;
    for i in 0..rounds {
        let t = theta + (i % 7) as f64 * 0.1;
        picks += usize::from(
            select_next(&rubric, t, &administered, &|_| false, &cfg, &mut rng).is_some(),
        );
    }
    let select_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    assert_eq!(picks, rounds);
    println!("posterior update {update_us:.2} µs, select_next {select_us:.2} µs (30-item bank)");
}
