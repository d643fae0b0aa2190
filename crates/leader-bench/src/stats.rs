//! Percentiles of a set of durations, the one summary every section uses.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nearest-rank percentiles of a sample, in milliseconds (fractional, so that microsecond-scale
/// stores still show digits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile (with fewer than 100 samples, close to the maximum).
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

impl Summary {
    /// The summary of `samples` (all zero when there are none).
    pub fn of(samples: &[Duration]) -> Summary {
        if samples.is_empty() {
            return Summary { n: 0, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, max_ms: 0.0, mean_ms: 0.0 };
        }
        let mut sorted: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Summary {
            n: sorted.len(),
            p50_ms: nearest_rank(&sorted, 50.0),
            p90_ms: nearest_rank(&sorted, 90.0),
            p99_ms: nearest_rank(&sorted, 99.0),
            max_ms: sorted[sorted.len() - 1],
            mean_ms: mean,
        }
    }
}

/// A duration in fractional milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile of a sorted, non-empty slice.
fn nearest_rank(sorted: &[f64], pct: f64) -> f64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.n, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn small_and_empty_samples() {
        let s = Summary::of(&[Duration::from_millis(3)]);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (3.0, 3.0, 3.0));
        assert_eq!(Summary::of(&[]).n, 0);
    }
}
