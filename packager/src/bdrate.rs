//! Comparing two ladders: BD-rate (bits saved at equal quality) and quality
//! at equal bits. Pure.
//!
//! BD-rate here interpolates log bitrate piecewise-linearly in quality between
//! a ladder's rungs (the classic cubic fit needs four points per curve, and a
//! 3-rung ladder has three), and averages the log-rate difference over the
//! quality range both ladders cover. Negative: the test ladder needs fewer bits.

/// A measured rung: bits per second and quality.
pub type Rung = (f64, f64);

/// The rungs that climb: sorted by bitrate, each better than the one below
/// (a rung that is dearer but no better is one no player should pick).
fn climbing(rungs: &[Rung]) -> Vec<Rung> {
    let mut v: Vec<Rung> = rungs
        .iter()
        .copied()
        .filter(|(r, q)| *r > 0.0 && r.is_finite() && q.is_finite())
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<Rung> = Vec::new();
    for r in v {
        if out.last().is_none_or(|l| r.1 > l.1) {
            out.push(r);
        }
    }
    out
}

/// ln(bitrate) at quality `q` on a climbing ladder (inside its range).
fn log_rate_at(l: &[Rung], q: f64) -> f64 {
    let i = l.partition_point(|r| r.1 < q).clamp(1, l.len() - 1);
    let (a, b) = (l[i - 1], l[i]);
    let t = (q - a.1) / (b.1 - a.1);
    a.0.ln() + t * (b.0.ln() - a.0.ln())
}

/// BD-rate of `test` against `anchor`, as a fraction (-0.3 = 30 % fewer
/// bits), and the quality range it was taken over; `None` when the ladders'
/// quality ranges do not overlap (or a ladder has fewer than two rungs).
pub fn bd_rate(anchor: &[Rung], test: &[Rung]) -> Option<(f64, (f64, f64))> {
    let (a, t) = (climbing(anchor), climbing(test));
    if a.len() < 2 || t.len() < 2 {
        return None;
    }
    let lo = a[0].1.max(t[0].1);
    let hi = a[a.len() - 1].1.min(t[t.len() - 1].1);
    if hi <= lo {
        return None;
    }
    // Both interpolants are linear between the union of the rungs'
    // qualities, so the trapezoid rule over that union is exact.
    let mut qs: Vec<f64> = a
        .iter()
        .chain(&t)
        .map(|r| r.1)
        .filter(|q| *q > lo && *q < hi)
        .chain([lo, hi])
        .collect();
    qs.sort_by(f64::total_cmp);
    qs.dedup();
    let diff = |q: f64| log_rate_at(&t, q) - log_rate_at(&a, q);
    let area: f64 = qs
        .windows(2)
        .map(|w| (w[1] - w[0]) * (diff(w[0]) + diff(w[1])) / 2.0)
        .sum();
    Some(((area / (hi - lo)).exp() - 1.0, (lo, hi)))
}

/// The quality a player gets from `ladder` with `bandwidth` bits per second:
/// that of the best rung it can afford, or `None` when it can afford none.
pub fn quality_at(ladder: &[Rung], bandwidth: f64) -> Option<f64> {
    ladder
        .iter()
        .filter(|r| r.0 <= bandwidth)
        .map(|r| r.1)
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_bits_everywhere_is_minus_fifty_percent() {
        let anchor = [(500e3, 70.0), (1200e3, 80.0), (2500e3, 90.0)];
        let test: Vec<Rung> = anchor.iter().map(|(r, q)| (r / 2.0, *q)).collect();
        let (bd, range) = bd_rate(&anchor, &test).unwrap();
        assert!((bd + 0.5).abs() < 1e-12, "{bd}");
        assert_eq!(range, (70.0, 90.0));
        let (back, _) = bd_rate(&test, &anchor).unwrap();
        assert!((back - 1.0).abs() < 1e-12, "{back}");
        assert!(bd_rate(&anchor, &anchor).unwrap().0.abs() < 1e-12);
    }

    #[test]
    fn only_the_overlap_counts() {
        // The test ladder covers 75..95: compared over 75..90 only, where it
        // needs the same bits as the anchor.
        let anchor = [(500e3, 70.0), (1000e3, 80.0), (2000e3, 90.0)];
        let test = [
            (707_106.78, 75.0),
            (1000e3, 80.0),
            (2000e3, 90.0),
            (8e6, 95.0),
        ];
        let (bd, range) = bd_rate(&anchor, &test).unwrap();
        assert!(bd.abs() < 1e-6, "{bd}");
        assert_eq!(range, (75.0, 90.0));
        assert!(bd_rate(&anchor, &[(1e6, 95.0), (2e6, 97.0)]).is_none());
        assert!(bd_rate(&anchor, &[(1e6, 85.0)]).is_none());
    }

    #[test]
    fn rungs_that_buy_nothing_are_ignored() {
        let anchor = [
            (500e3, 70.0),
            (1000e3, 80.0),
            (3000e3, 79.0),
            (2000e3, 90.0),
        ];
        assert_eq!(
            climbing(&anchor),
            [(500e3, 70.0), (1000e3, 80.0), (2000e3, 90.0)]
        );
    }

    #[test]
    fn quality_at_a_bandwidth_is_the_best_affordable_rung() {
        let l = [(300e3, 60.0), (900e3, 85.0), (2000e3, 93.0)];
        assert_eq!(quality_at(&l, 1e6), Some(85.0));
        assert_eq!(quality_at(&l, 5e6), Some(93.0));
        assert_eq!(quality_at(&l, 200e3), None);
    }
}
