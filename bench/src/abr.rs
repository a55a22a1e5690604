//! Adaptive bitrate: which variant to fetch the next segment from.
//!
//! Deliberately the textbook rule rather than any one player's: a throughput
//! estimate (harmonic mean of the last few segment downloads, which a single
//! fast download cannot inflate) discounted by a safety factor, and a buffer
//! guard that drops to the lowest variant when less than one segment is
//! buffered, since a stall then costs more than picture quality. The point is
//! load that moves between renditions like real players' does, not to compete
//! with them.

use std::collections::VecDeque;
use std::time::Duration;

/// Share of the estimated throughput a variant's BANDWIDTH may use.
pub const SAFETY: f64 = 0.8;

/// Downloads the estimate is taken over.
pub const WINDOW: usize = 4;

/// Recent segment download throughputs.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    samples: VecDeque<f64>,
}

impl Throughput {
    /// Records one download of `bytes` that took `elapsed` (request sent to
    /// last byte). Instant downloads are recorded as 1 µs, not ignored.
    pub fn record(&mut self, bytes: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-6);
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(bytes as f64 * 8.0 / secs);
    }

    /// Harmonic mean of the window in bit/s; `None` before the first download.
    pub fn estimate(&self) -> Option<f64> {
        harmonic_mean(self.samples.iter().copied())
    }
}

/// Harmonic mean of positive samples; `None` if there are none (zero samples,
/// an empty download, pull the mean to zero, as they should).
pub fn harmonic_mean(samples: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut n, mut inv) = (0u32, 0.0);
    for s in samples {
        n += 1;
        if s <= 0.0 {
            return Some(0.0);
        }
        inv += 1.0 / s;
    }
    (n > 0).then(|| f64::from(n) / inv)
}

/// Index into `ladder` (BANDWIDTHs, ascending) of the variant for the next
/// segment, given the throughput estimate, the buffer ahead of the playhead
/// and the duration of the segment about to be fetched.
pub fn choose(
    ladder: &[u64],
    estimate_bps: Option<f64>,
    buffer: Duration,
    segment: Duration,
) -> usize {
    let Some(estimate) = estimate_bps else {
        return 0;
    };
    if buffer < segment {
        return 0;
    }
    let budget = SAFETY * estimate;
    ladder
        .iter()
        .rposition(|&bw| bw as f64 <= budget)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [u64; 3] = [655_600, 1_425_600, 2_855_600];

    #[test]
    fn choice_table() {
        let s = |x: f64| Duration::from_secs_f64(x);
        let seg = s(4.0);
        // (estimate bit/s, buffer s, expected index)
        let table: &[(Option<f64>, f64, usize)] = &[
            (None, 30.0, 0),             // nothing measured yet: start low
            (Some(1e9), 0.0, 0),         // empty buffer: lowest whatever the estimate
            (Some(1e9), 3.99, 0),        // under one segment
            (Some(1e9), 4.0, 2),         // one segment: throughput decides
            (Some(3_570_000.0), 8.0, 2), // 0.8 × = 2 856 000 ≥ 2 855 600
            (Some(3_569_000.0), 8.0, 1), // 2 855 200: just under
            (Some(1_783_000.0), 8.0, 1), // 1 426 400
            (Some(1_781_000.0), 8.0, 0),
            (Some(100_000.0), 8.0, 0), // below the lowest: the lowest anyway
            (Some(0.0), 8.0, 0),
        ];
        for &(est, buf, want) in table {
            assert_eq!(choose(&LADDER, est, s(buf), seg), want, "{est:?} {buf}");
        }
        assert_eq!(choose(&[], Some(1e9), s(10.0), seg), 0);
        assert_eq!(choose(&[5], Some(1.0), s(10.0), seg), 0);
    }

    #[test]
    fn harmonic_mean_resists_one_fast_sample() {
        assert_eq!(harmonic_mean([].into_iter()), None);
        assert_eq!(harmonic_mean([2.0].into_iter()), Some(2.0));
        let hm = harmonic_mean([1e6, 1e6, 1e6, 1e12].into_iter()).unwrap();
        assert!((1.33e6..1.34e6).contains(&hm), "{hm}");
        assert_eq!(harmonic_mean([1e6, 0.0].into_iter()), Some(0.0));
    }

    #[test]
    fn throughput_window_slides() {
        let mut t = Throughput::default();
        assert_eq!(t.estimate(), None);
        // 1 MB in 1 s = 8 Mbit/s.
        t.record(1_000_000, Duration::from_secs(1));
        assert_eq!(t.estimate(), Some(8e6));
        for _ in 0..WINDOW {
            t.record(500_000, Duration::from_secs(1));
        }
        // The fast sample has left the window.
        assert_eq!(t.estimate(), Some(4e6));
        t.record(1, Duration::ZERO);
        assert!(t.estimate().unwrap() > 0.0);
    }
}
