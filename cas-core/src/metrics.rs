//! Latency histograms: a fixed set of buckets of atomic counts, so that
//! recording an operation costs a few relaxed atomic adds and no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the buckets, in seconds (the last bucket, `+Inf`,
/// is implicit): from a local read of a small blob to a large transfer.
pub const LATENCY_BOUNDS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// A histogram being recorded into.
#[derive(Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative), `+Inf` last.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    /// The sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        LatencyHistogram { cumulative, sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// A latency histogram as read: for each bound of [`LATENCY_BOUNDS`], then
/// `+Inf`, how many operations took at most that long (cumulative, as
/// Prometheus's `_bucket{le=...}`), and the seconds they took in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// `LATENCY_BOUNDS.len() + 1` cumulative counts (empty in a default value).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// How many operations were recorded.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// `(le, cumulative count)` for each bucket, `+Inf` last.
    pub fn buckets(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let bounds = LATENCY_BOUNDS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]);
        bounds.zip(self.cumulative.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(1000));
        let s = h.snapshot();
        assert_eq!(s.count(), 3);
        let buckets: Vec<(String, u64)> = s.buckets().collect();
        assert_eq!(buckets.len(), LATENCY_BOUNDS.len() + 1);
        assert_eq!(buckets[0], ("0.0005".to_string(), 1));
        assert_eq!(buckets[4], ("0.01".to_string(), 2));
        assert_eq!(buckets[LATENCY_BOUNDS.len() - 1], ("120".to_string(), 2));
        assert_eq!(buckets[LATENCY_BOUNDS.len()], ("+Inf".to_string(), 3));
        assert!((s.sum_seconds - 1000.0073).abs() < 1e-6);
        assert_eq!(LatencyHistogram::default().count(), 0);
    }
}
