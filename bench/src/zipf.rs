//! Which object each request asks for: Zipf popularity over the catalogue.
//!
//! Video popularity is heavy-tailed; a Zipf law with exponent near 1 is the usual
//! model, and the exponent decides how much of the load the server's page cache
//! absorbs. The sampler is an exact inverse CDF (a precomputed cumulative table
//! and a binary search): O(log n) per draw, no rejection loop, exact for every
//! exponent including 0 (uniform), and easy to test against the formula.

use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng, rngs::SmallRng};

/// Zipf distribution over ranks `0..n`: P(rank k) ∝ 1 / (k+1)^s.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// cdf[k] = P(rank <= k); the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` must be at least 1 and `s` finite and non-negative (checked by the CLI).
    pub fn new(n: usize, s: f64) -> Zipf {
        assert!(n > 0 && s.is_finite() && s >= 0.0);
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        // Rounding may leave the last entry a hair below 1; a draw of u in
        // [last, 1) must still land on the last rank.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Zipf { cdf }
    }

    /// The rank for a uniform draw `u` in [0, 1).
    pub fn rank_for(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// Draws a rank.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.rank_for(rng.random::<f64>())
    }

    /// The probability of rank `k`.
    #[cfg(test)]
    pub fn probability(&self, k: usize) -> f64 {
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }
}

/// Popularity over a catalogue: ranks are the catalogue order shuffled by the
/// seed, so the most popular objects are not simply the first files in sort
/// order (which would all sit in one directory), and two runs with one seed
/// agree on which object is hot.
#[derive(Debug, Clone)]
pub struct Popularity {
    zipf: Zipf,
    /// rank → catalogue index.
    by_rank: Vec<usize>,
}

impl Popularity {
    pub fn new(n: usize, s: f64, seed: u64) -> Popularity {
        let mut by_rank: Vec<usize> = (0..n).collect();
        by_rank.shuffle(&mut SmallRng::seed_from_u64(seed));
        Popularity {
            zipf: Zipf::new(n, s),
            by_rank,
        }
    }

    /// Draws a catalogue index.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.by_rank[self.zipf.sample(rng)]
    }

    /// The catalogue index of a rank (0 = most popular).
    #[cfg(test)]
    pub fn object_at_rank(&self, rank: usize) -> usize {
        self.by_rank[rank]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `draws` samples and checks every rank's count against the exact
    /// probability: within 5 binomial standard deviations (plus one, for ranks
    /// with a tiny expected count), and a chi-square statistic near its degrees
    /// of freedom.
    fn check(n: usize, s: f64, draws: usize) {
        let z = Zipf::new(n, s);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        let mut chi2 = 0.0;
        for (k, &c) in counts.iter().enumerate() {
            let p = (1.0 / (k as f64 + 1.0).powf(s))
                / (1..=n).map(|j| (j as f64).powf(-s)).sum::<f64>();
            assert!((z.probability(k) - p).abs() < 1e-12);
            let expect = p * draws as f64;
            let sd = (expect * (1.0 - p)).sqrt();
            assert!(
                (c as f64 - expect).abs() <= 5.0 * sd + 1.0,
                "n={n} s={s} rank {k}: {c} draws, expected {expect:.0}±{sd:.0}"
            );
            chi2 += (c as f64 - expect).powi(2) / expect;
        }
        // For k = n-1 degrees of freedom, chi2 has mean k and sd sqrt(2k).
        let dof = (n - 1) as f64;
        assert!(
            chi2 < dof + 6.0 * (2.0 * dof).sqrt(),
            "n={n} s={s}: chi2 {chi2:.1} for {dof} dof"
        );
    }

    #[test]
    fn matches_zipf_exponent_1() {
        check(100, 1.0, 1_000_000);
    }

    #[test]
    fn matches_other_exponents() {
        check(1000, 0.8, 1_000_000);
        check(50, 1.5, 200_000);
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let z = Zipf::new(10, 0.0);
        for k in 0..10 {
            assert!((z.probability(k) - 0.1).abs() < 1e-12);
        }
        check(64, 0.0, 640_000);
    }

    #[test]
    fn inverse_cdf_edges() {
        let z = Zipf::new(3, 1.0);
        assert_eq!(z.rank_for(0.0), 0);
        assert_eq!(z.rank_for(0.999_999_999_999), 2);
        // P(0) = 1 / (1 + 1/2 + 1/3) = 6/11.
        assert_eq!(z.rank_for(6.0 / 11.0 - 1e-9), 0);
        assert_eq!(z.rank_for(6.0 / 11.0 + 1e-9), 1);
        let one = Zipf::new(1, 1.0);
        assert_eq!(one.rank_for(0.5), 0);
    }

    #[test]
    fn ranking_is_a_seeded_permutation() {
        let a = Popularity::new(100, 1.0, 42);
        let b = Popularity::new(100, 1.0, 42);
        let c = Popularity::new(100, 1.0, 43);
        let ranks = |p: &Popularity| (0..100).map(|r| p.object_at_rank(r)).collect::<Vec<_>>();
        assert_eq!(ranks(&a), ranks(&b));
        assert_ne!(ranks(&a), ranks(&c));
        let mut sorted = ranks(&a);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        // The hottest object gets the largest share of picks.
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 100];
        for _ in 0..20_000 {
            counts[a.pick(&mut rng)] += 1;
        }
        let hottest = (0..100).max_by_key(|&i| counts[i]).unwrap();
        assert_eq!(hottest, a.object_at_rank(0));
    }
}
