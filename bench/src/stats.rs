//! Summary statistics: nearest-rank percentiles of a sample.

use serde::Serialize;

/// Summary of a sample of non-negative or signed values (seconds or milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    /// How many values.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Dist {
    /// Summarises `values` (NaNs are ignored); `None` when no value is left.
    pub fn of(values: &[f64]) -> Option<Dist> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(Dist {
            n,
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`: the value at rank ⌈p/100 · n⌉
/// (1-based), so it is always an observed value.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Dist::of(&v).unwrap();
        assert_eq!(
            (d.n, d.p50, d.p95, d.p99, d.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert!((d.mean - 50.5).abs() < 1e-12);
        let d = Dist::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((d.p50, d.p95, d.max), (2.0, 3.0, 3.0));
        let d = Dist::of(&[7.0]).unwrap();
        assert_eq!((d.p50, d.p99), (7.0, 7.0));
        assert!(Dist::of(&[]).is_none());
        assert!(Dist::of(&[f64::NAN]).is_none());
    }
}
