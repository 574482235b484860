//! A lock-free latency histogram: log-linear buckets (8 per power of two, so a
//! quantile is within ~6 % of the true value), cheap enough to record every commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u32 = 8;
/// Buckets: values below `SUB` µs exactly, then 8 per octave up to 2^40 µs (~12 days).
const BUCKETS: usize = ((40 - 2) * SUB) as usize;

/// Counts of durations in microsecond buckets.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn index(micros: u64) -> usize {
    if micros < u64::from(SUB) {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros(); // ≥ 3
    let sub = (micros >> (exp - 3)) & u64::from(SUB - 1);
    (((exp - 2) * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

/// Smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64;
    }
    let exp = i as u32 / SUB + 2;
    let sub = i as u64 % u64::from(SUB);
    (1u64 << exp) + (sub << (exp - 3))
}

impl LatencyHistogram {
    /// Count one duration.
    pub fn record(&self, d: Duration) {
        let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Counts of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
}

impl HistogramSnapshot {
    /// What was recorded between `earlier` and `self`.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// Number of durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (`0.5` = median), as the middle of its bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = lower_bound(i);
                let hi = lower_bound(i + 1);
                return Duration::from_micros(lo + (hi - lo) / 2);
            }
        }
        Duration::from_micros(lower_bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for i in 0..BUCKETS - 1 {
            assert!(lower_bound(i) < lower_bound(i + 1), "{i}");
            assert_eq!(index(lower_bound(i)), i, "{i}");
            assert_eq!(index(lower_bound(i + 1) - 1), i, "{i}");
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        let p50 = s.quantile(0.5).as_secs_f64() * 1000.0;
        let p99 = s.quantile(0.99).as_secs_f64() * 1000.0;
        assert!((47.0..=54.0).contains(&p50), "{p50}");
        assert!((93.0..=106.0).contains(&p99), "{p99}");
        let later = h.snapshot();
        h.record(Duration::from_secs(2));
        let d = h.snapshot().since(&later);
        assert_eq!(d.count(), 1);
        assert!(d.quantile(0.5) > Duration::from_millis(1900));
    }
}
