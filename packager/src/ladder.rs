//! Ladder selection: from trial encodes (resolution, quality setting →
//! bitrate, quality) to the rungs worth shipping. Pure: no IO, no clock.
//!
//! 1. The hull: the upper convex hull of all points in (bitrate, quality),
//!    across resolutions. A point under it is beaten by a mix of two others,
//!    so no rung should sit there; where the hull moves from one resolution
//!    to the next is where the ladder should switch resolution.
//!    Where two neighbouring hull points of one resolution are more than
//!    `max_ratio` apart, points on the edge between them are added (`densify`).
//!    Where the hull jumps from one resolution to another by more than
//!    `max_ratio`, the edge itself is no encode (a mix of two pictures), so
//!    the gap is filled from each resolution's own curve instead: at evenly
//!    spaced bitrates, the best resolution whose own hull spans it (`bridge`).
//!    Without that, a player with a bandwidth inside the gap falls to the
//!    rung below it, and gets less quality than a fixed ladder would give.
//! 2. The top: the first hull point at or above the saturation quality (the
//!    top quality worth paying for), or from which the best point within
//!    `max_bitrate` is less than `min_gain_per_doubling` better per doubling
//!    of bits.
//! 3. The rungs: from the cheapest hull point at or above `min_bitrate`
//!    upwards, each next rung the first hull point at least `min_ratio` times
//!    dearer than the last that is `quality_step` better, or is the top, or
//!    is the last before the gap would pass `max_ratio`; the top replaces the
//!    last rung when it is less than `min_ratio` above it.
//!
//! An easier title (the same quality for fewer bits) therefore starts higher
//! up its curve and reaches the top sooner: fewer, cheaper rungs.

use serde::{Deserialize, Serialize};

/// What `select` does, in a phrase, recorded with the figures.
pub const SELECTION: &str = "upper hull; wide same-resolution edges filled; jumps between resolutions bridged from their own curves";

/// One trial encode, measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub width: u32,
    pub height: u32,
    /// The encoder's quality setting (x264 CRF).
    pub crf: f64,
    /// Bits per second, measured.
    #[serde(rename = "bitrate_bps")]
    pub bitrate: f64,
    /// Quality against the source at display resolution (see `metric`).
    pub quality: f64,
}

/// The selection's knobs, in the metric's units where they are qualities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Bits per second: the cheapest rung is the first hull point at or above
    /// this, unless the title saturates below it (then it gets one rung).
    #[serde(rename = "min_bitrate_bps")]
    pub min_bitrate: f64,
    /// Bits per second: no rung above.
    #[serde(rename = "max_bitrate_bps")]
    pub max_bitrate: f64,
    /// Quality past which more bits are not worth paying for.
    pub saturation: f64,
    /// Stop climbing where the next hull point gains less than this per doubling of bits.
    pub min_gain_per_doubling: f64,
    /// Neighbouring rungs differ by at least this much quality ...
    pub quality_step: f64,
    /// ... and by at least this bitrate ratio;
    pub min_ratio: f64,
    /// but by no more than this one where the hull has a point in between.
    pub max_ratio: f64,
}

/// The upper convex hull of `points` in (bitrate, quality): the points no mix
/// of two others beats, in increasing bitrate (and so increasing quality).
pub fn hull(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.bitrate.is_finite() && p.bitrate > 0.0 && p.quality.is_finite())
        .collect();
    sorted.sort_by(|a, b| {
        a.bitrate
            .total_cmp(&b.bitrate)
            .then(b.quality.total_cmp(&a.quality))
    });
    let mut out: Vec<Point> = Vec::new();
    for p in sorted {
        // Pareto first: a dearer point must be better to count at all.
        if out.last().is_some_and(|l| p.quality <= l.quality) {
            continue;
        }
        // Then concavity: drop the last point while it lies on or under the
        // chord from the one before it to `p`.
        while out.len() >= 2 {
            let a = out[out.len() - 2];
            let b = out[out.len() - 1];
            let cross = (b.bitrate - a.bitrate) * (p.quality - a.quality)
                - (b.quality - a.quality) * (p.bitrate - a.bitrate);
            if cross >= 0.0 {
                out.pop();
            } else {
                break;
            }
        }
        out.push(p);
    }
    out
}

/// The rungs, cheapest first (empty only when no point is usable).
pub fn select(points: &[Point], params: &Params) -> Vec<Point> {
    let h = bridge(
        points,
        &densify(&hull(points), params.max_ratio),
        params.max_ratio,
    );
    // The hull ascends in bitrate: the points within the maximum are a prefix.
    let within = h.partition_point(|p| p.bitrate <= params.max_bitrate);
    if within == 0 {
        // Everything dearer than the maximum: the cheapest there is.
        return h.first().copied().into_iter().collect();
    }
    let top = top_index(&h[..within], params);
    // Saturated below the minimum bitrate: one rung, and it is cheap.
    let Some(bottom) = h[..top]
        .iter()
        .position(|p| p.bitrate >= params.min_bitrate)
    else {
        return vec![h[top]];
    };
    let mut rungs = vec![bottom];
    while let Some(next) = next_rung(&h, *rungs.last().expect("never empty"), top, params) {
        rungs.push(next);
    }
    let last = rungs.len() - 1;
    if rungs[last] != top {
        // The top is less than `min_ratio` above the last rung: too close
        // for both, keep the top.
        rungs[last] = top;
    }
    rungs.into_iter().map(|i| h[i]).collect()
}

/// The rung after `cur`: the first point at least `min_ratio` dearer that is
/// a quality step better, or is the top, or is the last before the gap from
/// `cur` would pass `max_ratio` (a hole players would fall into).
fn next_rung(h: &[Point], cur: usize, top: usize, params: &Params) -> Option<usize> {
    let c = h[cur];
    (cur + 1..=top).find(|&j| {
        h[j].bitrate >= c.bitrate * params.min_ratio
            && (h[j].quality >= c.quality + params.quality_step
                || j == top
                || h[j + 1].bitrate > c.bitrate * params.max_ratio)
    })
}

/// Where the climb stops: saturated, or what is left within reach buys too
/// little per doubling of bits.
fn top_index(cand: &[Point], params: &Params) -> usize {
    let last = cand.len() - 1;
    let best = cand[last];
    for (i, p) in cand.iter().enumerate() {
        if p.quality >= params.saturation || i == last {
            return i;
        }
        let gain = (best.quality - p.quality) / (best.bitrate / p.bitrate).log2();
        if gain < params.min_gain_per_doubling {
            return i;
        }
    }
    last
}

/// Points along the hull's edges where two neighbouring vertices of the same
/// resolution are more than `max_ratio` apart (a coarse CRF grid on a title
/// whose bits climb steeply): evenly spaced in log bitrate, the CRF
/// interpolated likewise (x264 takes fractional CRFs; bits fall about
/// exponentially with CRF), the quality on the edge itself (concave curves
/// lie above it, so it is what the encode will at least reach).
pub fn densify(hull: &[Point], max_ratio: f64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(hull.len());
    for (i, &a) in hull.iter().enumerate() {
        out.push(a);
        let Some(&b) = hull.get(i + 1) else { break };
        let ratio = b.bitrate / a.bitrate;
        if (a.width, a.height) != (b.width, b.height)
            || max_ratio.is_nan()
            || max_ratio <= 1.0
            || ratio <= max_ratio
        {
            continue;
        }
        let n = (ratio.ln() / max_ratio.ln()).ceil().min(16.0) as u32;
        for k in 1..n {
            let t = f64::from(k) / f64::from(n);
            let bitrate = a.bitrate * ratio.powf(t);
            let along = (bitrate - a.bitrate) / (b.bitrate - a.bitrate);
            out.push(Point {
                crf: ((a.crf + t * (b.crf - a.crf)) * 10.0).round() / 10.0,
                bitrate,
                quality: a.quality + along * (b.quality - a.quality),
                ..a
            });
        }
    }
    out
}

/// The upper hull of each resolution's own points: what one encode at that
/// resolution can reach (its curve is concave, so its chords are lower bounds).
fn per_resolution(points: &[Point]) -> Vec<Vec<Point>> {
    let mut sizes: Vec<(u32, u32)> = points.iter().map(|p| (p.width, p.height)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .map(|s| {
            let own: Vec<Point> = points
                .iter()
                .copied()
                .filter(|p| (p.width, p.height) == s)
                .collect();
            hull(&own)
        })
        .collect()
}

/// The point on `curve` (one resolution's hull) at `bitrate`, strictly
/// between two of its points: quality on the chord, CRF interpolated in log
/// bitrate as `densify` does.
fn on_curve(curve: &[Point], bitrate: f64) -> Option<Point> {
    let w = curve
        .windows(2)
        .find(|w| w[0].bitrate < bitrate && bitrate < w[1].bitrate)?;
    let (a, b) = (w[0], w[1]);
    let t = (bitrate / a.bitrate).ln() / (b.bitrate / a.bitrate).ln();
    let along = (bitrate - a.bitrate) / (b.bitrate - a.bitrate);
    Some(Point {
        crf: ((a.crf + t * (b.crf - a.crf)) * 10.0).round() / 10.0,
        bitrate,
        quality: a.quality + along * (b.quality - a.quality),
        ..a
    })
}

/// Fill the hull's jumps between resolutions that are wider than
/// `max_ratio`: at bitrates evenly spaced in log between the two vertices,
/// the best point any one resolution's own hull has there, kept only where
/// it climbs (each better than the last, worse than the vertex above).
pub fn bridge(points: &[Point], h: &[Point], max_ratio: f64) -> Vec<Point> {
    if max_ratio.is_nan() || max_ratio <= 1.0 {
        return h.to_vec();
    }
    let curves = per_resolution(points);
    let mut out: Vec<Point> = Vec::with_capacity(h.len());
    for (i, &a) in h.iter().enumerate() {
        out.push(a);
        let Some(&b) = h.get(i + 1) else { break };
        let ratio = b.bitrate / a.bitrate;
        if (a.width, a.height) == (b.width, b.height) || ratio <= max_ratio {
            continue;
        }
        let n = (ratio.ln() / max_ratio.ln()).ceil().min(16.0) as u32;
        for k in 1..n {
            let bitrate = a.bitrate * ratio.powf(f64::from(k) / f64::from(n));
            let best = curves
                .iter()
                .filter_map(|c| on_curve(c, bitrate))
                .max_by(|x, y| x.quality.total_cmp(&y.quality));
            let last = *out.last().expect("a pushed");
            if let Some(p) = best.filter(|p| p.quality > last.quality && p.quality < b.quality) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(height: u32, bitrate: f64, quality: f64) -> Point {
        Point {
            width: height * 16 / 9,
            height,
            crf: 0.0,
            bitrate,
            quality,
        }
    }

    /// The selection's defaults for VMAF.
    const VMAF: Params = crate::metric::VMAF_PARAMS;

    /// A resolution's rate–quality curve: quality climbs with log bitrate
    /// and levels off at a ceiling that is lower for smaller pictures; a
    /// picture has `detail` times more to code (bits needed scale with it).
    fn curve(height: u32, detail: f64) -> Vec<Point> {
        let ceiling = match height {
            720 => 100.0,
            540 => 93.0,
            360 => 80.0,
            _ => 65.0,
        };
        let pixels = f64::from(height * height * 16 / 9);
        (0..7)
            .map(|i| {
                let bitrate = pixels * detail * 0.05 * 2f64.powi(i);
                let quality = ceiling * (1.0 - (-(0.5 + 0.45 * f64::from(i))).exp());
                p(height, bitrate, quality)
            })
            .collect()
    }

    fn title(detail: f64) -> Vec<Point> {
        [720, 540, 360, 240]
            .into_iter()
            .flat_map(|h| curve(h, detail))
            .collect()
    }

    #[test]
    fn hull_drops_beaten_points_and_switches_resolution() {
        let pts = vec![
            p(360, 400e3, 70.0),
            p(360, 800e3, 78.0),
            p(720, 800e3, 72.0),  // beaten by 360p at the same bitrate
            p(720, 1600e3, 90.0), // 720p takes over
            p(360, 1600e3, 82.0),
            p(720, 1000e3, 79.0), // under the chord 800k/78 → 1600k/90
        ];
        let h = hull(&pts);
        let got: Vec<(u32, f64)> = h.iter().map(|p| (p.height, p.bitrate)).collect();
        assert_eq!(got, [(360, 400e3), (360, 800e3), (720, 1600e3)]);
    }

    #[test]
    fn hull_ignores_unusable_points() {
        let pts = vec![
            p(360, 0.0, 50.0),
            p(360, f64::NAN, 50.0),
            p(360, 1e6, f64::INFINITY),
            p(360, 1e6, 60.0),
        ];
        assert_eq!(hull(&pts), vec![p(360, 1e6, 60.0)]);
        assert!(select(&[], &VMAF).is_empty());
    }

    #[test]
    fn a_simple_title_gets_fewer_cheaper_rungs_than_a_complex_one() {
        let simple = select(&title(0.5), &VMAF);
        let complex = select(&title(8.0), &VMAF);
        assert!(simple.len() < complex.len(), "{simple:#?} vs {complex:#?}");
        let top = |l: &[Point]| l.last().unwrap().bitrate;
        assert!(
            top(&simple) < top(&complex) / 3.0,
            "{simple:#?} vs {complex:#?}"
        );
        // Resolution climbs with bitrate, and the top is the full picture.
        for l in [&simple, &complex] {
            assert!(l.windows(2).all(|w| w[0].height <= w[1].height), "{l:#?}");
        }
    }

    #[test]
    fn bounds_and_saturation() {
        let pts = title(2.0);
        let capped = select(
            &pts,
            &Params {
                max_bitrate: 1e6,
                ..VMAF
            },
        );
        assert!(capped.iter().all(|r| r.bitrate <= 1e6), "{capped:#?}");
        let floored = select(
            &pts,
            &Params {
                min_bitrate: 1e6,
                ..VMAF
            },
        );
        assert!(floored.iter().all(|r| r.bitrate >= 1e6), "{floored:#?}");
        let low_bar = select(
            &pts,
            &Params {
                saturation: 70.0,
                ..VMAF
            },
        );
        let top = low_bar.last().unwrap();
        assert!(top.quality >= 70.0);
        assert!(low_bar.len() < select(&pts, &VMAF).len());
        // Everything outside the bounds: one rung, never none.
        let none_inside = select(
            &pts,
            &Params {
                min_bitrate: 1e12,
                max_bitrate: 2e12,
                ..VMAF
            },
        );
        assert_eq!(none_inside.len(), 1);
    }

    #[test]
    fn a_saturated_title_gets_one_rung() {
        // Everything is already near-perfect at the cheapest point.
        let pts = vec![
            p(720, 200e3, 97.0),
            p(720, 400e3, 98.0),
            p(540, 150e3, 96.0),
        ];
        let l = select(&pts, &VMAF);
        assert_eq!(l.len(), 1, "{l:#?}");
        assert_eq!(l[0].bitrate, 150e3);
    }

    /// A hull vertex, or a point on an edge between two of one resolution.
    fn on_hull(h: &[Point], r: &Point) -> bool {
        h.contains(r)
            || h.windows(2).any(|w| {
                let (a, b) = (w[0], w[1]);
                let along = (r.bitrate - a.bitrate) / (b.bitrate - a.bitrate);
                (a.height, b.height) == (r.height, r.height)
                    && a.bitrate < r.bitrate
                    && r.bitrate < b.bitrate
                    && (r.quality - (a.quality + along * (b.quality - a.quality))).abs() < 1e-6
            })
    }

    #[test]
    fn wide_gaps_on_one_resolution_are_filled() {
        // A coarse CRF grid on a steep title: nothing between 770k and 6.3M.
        let pts = vec![
            Point {
                crf: 33.0,
                ..p(540, 268e3, 69.0)
            },
            Point {
                crf: 28.0,
                ..p(720, 770e3, 76.5)
            },
            Point {
                crf: 23.0,
                ..p(720, 6.3e6, 86.7)
            },
        ];
        let l = select(&pts, &VMAF);
        let rates: Vec<f64> = l.iter().map(|r| r.bitrate).collect();
        assert!(l.len() >= 5, "{l:#?}");
        // 540p to 720p has no point between (different resolutions); the
        // 720p edge does.
        for w in l[1..].windows(2) {
            assert!(
                w[1].bitrate <= w[0].bitrate * VMAF.max_ratio + 1.0,
                "{rates:?}"
            );
        }
        let filled: Vec<f64> = l[2..l.len() - 1].iter().map(|r| r.crf).collect();
        assert!(filled.iter().all(|c| *c > 23.0 && *c < 28.0), "{filled:?}");
        assert!(h_on(&pts, &l));
    }

    /// On the hull, or (where the hull jumps between resolutions by more
    /// than `max_ratio`) on the hull of its own resolution's points: an
    /// encode that resolution reaches.
    fn on_frontier(pts: &[Point], max_ratio: f64, r: &Point) -> bool {
        let h = hull(pts);
        if on_hull(&h, r) {
            return true;
        }
        let in_jump = h.windows(2).any(|w| {
            (w[0].width, w[0].height) != (w[1].width, w[1].height)
                && w[1].bitrate > w[0].bitrate * max_ratio
                && w[0].bitrate < r.bitrate
                && r.bitrate < w[1].bitrate
        });
        let own: Vec<Point> = pts
            .iter()
            .copied()
            .filter(|p| (p.width, p.height) == (r.width, r.height))
            .collect();
        in_jump && on_hull(&hull(&own), r)
    }

    #[test]
    fn a_jump_between_resolutions_is_bridged_from_their_own_curves() {
        // 360p to 720p on the hull, 6.4 times dearer: nothing a player
        // between them could take. 540p (and 360p) have encodes in between,
        // under the hull's edge but on their own curves.
        let pts = vec![
            p(360, 347e3, 13.2),
            p(360, 700e3, 14.0),
            p(360, 1.4e6, 14.5),
            p(540, 600e3, 13.6),
            p(540, 900e3, 14.5),
            p(540, 1.4e6, 15.5),
            p(720, 2.238e6, 17.9),
        ];
        let params = Params {
            min_bitrate: 300e3,
            ..crate::metric::Metric::SsimDb.default_params()
        };
        let h = hull(&pts);
        assert_eq!(h.len(), 2, "{h:#?}");
        let l = select(&pts, &params);
        let got: Vec<u32> = l.iter().map(|r| r.height).collect();
        assert_eq!(got, [360, 360, 540, 720], "{l:#?}");
        for w in l.windows(2) {
            assert!(
                w[1].bitrate <= w[0].bitrate * params.max_ratio + 1.0,
                "{l:#?}"
            );
            assert!(w[1].quality > w[0].quality, "{l:#?}");
        }
        assert!(l.iter().all(|r| on_frontier(&pts, params.max_ratio, r)));
        // The 540p rung: between its 900k and 1.4M encodes, CRF between theirs.
        let r540 = l[2];
        assert!(r540.bitrate > 900e3 && r540.bitrate < 1.4e6, "{r540:?}");
    }

    fn h_on(pts: &[Point], rungs: &[Point]) -> bool {
        let h = hull(pts);
        rungs.iter().all(|r| on_hull(&h, r))
    }

    #[test]
    fn a_flat_curve_still_gets_rungs_up_to_what_is_in_reach() {
        // Grain-like: quality creeps up with bits. The climb stops at the
        // best within the maximum, not at the first small step.
        let pts = vec![
            p(240, 12e3, 40.6),
            p(540, 35e3, 41.3),
            p(240, 511e3, 45.5),
            p(540, 898e3, 47.4),
            p(360, 3.99e6, 56.7),
            p(540, 17.4e6, 70.0),
        ];
        let l = select(&pts, &VMAF);
        let got: Vec<(u32, f64)> = l.iter().map(|r| (r.height, r.bitrate)).collect();
        assert_eq!(got.last(), Some(&(360, 3.99e6)), "{got:?}");
        // The hull's jumps (540p 35k to 240p 511k, 540p 898k to 360p
        // 3.99M) are bridged from 240p's and 540p's own curves, so no two
        // neighbouring rungs are more than `max_ratio` apart.
        assert!(l[0].bitrate >= VMAF.min_bitrate, "{got:?}");
        assert!(
            l.windows(2)
                .all(|w| w[1].bitrate <= w[0].bitrate * VMAF.max_ratio),
            "{got:?}"
        );
        assert!(got.contains(&(240, 511e3)) && got.contains(&(540, 898e3)));
        assert!(l.iter().all(|r| on_frontier(&pts, VMAF.max_ratio, r)));
    }

    fn arb_points() -> impl Strategy<Value = Vec<Point>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![240u32, 360, 540, 720, 1080]),
                1e4f64..2e7,
                0f64..100.0,
            )
                .prop_map(|(h, b, q)| p(h, b, q)),
            0..40,
        )
    }

    fn arb_params() -> impl Strategy<Value = Params> {
        (
            1e4f64..1e6,
            1f64..100.0,
            50f64..100.0,
            0f64..5.0,
            0f64..10.0,
            1f64..3.0,
            1f64..3.0,
        )
            .prop_map(|(min, span, sat, gain, step, ratio, more)| Params {
                min_bitrate: min,
                max_bitrate: min * span,
                saturation: sat,
                min_gain_per_doubling: gain,
                quality_step: step,
                min_ratio: ratio,
                max_ratio: ratio * more,
            })
    }

    proptest! {
        #[test]
        fn rungs_climb_and_lie_on_the_hull(pts in arb_points(), params in arb_params()) {
            let rungs = select(&pts, &params);
            let h = hull(&pts);
            prop_assert_eq!(rungs.is_empty(), h.is_empty());
            for w in rungs.windows(2) {
                prop_assert!(w[0].bitrate < w[1].bitrate);
                prop_assert!(w[0].quality < w[1].quality);
            }
            for r in &rungs {
                prop_assert!(on_frontier(&pts, params.max_ratio, r), "{:?} not on the hull", r);
            }
            // Within the maximum whenever the hull has a point there; below
            // the minimum only as a single rung that is already saturated.
            if h.iter().any(|p| p.bitrate <= params.max_bitrate) {
                prop_assert!(rungs.iter().all(|r| r.bitrate <= params.max_bitrate));
            }
            if rungs.len() > 1 {
                prop_assert!(rungs.iter().all(|r| r.bitrate >= params.min_bitrate));
            }
        }

        #[test]
        fn hull_is_concave_and_dominates_every_point(pts in arb_points()) {
            let h = hull(&pts);
            for w in h.windows(3) {
                let s1 = (w[1].quality - w[0].quality) / (w[1].bitrate - w[0].bitrate);
                let s2 = (w[2].quality - w[1].quality) / (w[2].bitrate - w[1].bitrate);
                prop_assert!(s2 < s1);
            }
            for p in &pts {
                // No point lies above the hull's chord over its bitrate.
                if let Some(i) = h.windows(2).position(|w| w[0].bitrate <= p.bitrate && p.bitrate <= w[1].bitrate) {
                    let (a, b) = (h[i], h[i + 1]);
                    let q = a.quality + (b.quality - a.quality) * (p.bitrate - a.bitrate) / (b.bitrate - a.bitrate);
                    prop_assert!(p.quality <= q + 1e-9);
                }
            }
        }

        /// An easier source: the same curves, each quality for `factor` times
        /// fewer bits. It gets no more rungs, and its top rung costs no more.
        #[test]
        fn an_easier_source_gets_fewer_cheaper_rungs(
            pts in arb_points(),
            params in arb_params(),
            factor in 1f64..20.0,
        ) {
            // The bound that would stop the harder title before it saturates
            // is lifted: this is about the content, not the cap.
            let params = Params { max_bitrate: f64::INFINITY, ..params };
            let easier: Vec<Point> = pts.iter().map(|p| Point { bitrate: p.bitrate / factor, ..*p }).collect();
            let hard = select(&pts, &params);
            let easy = select(&easier, &params);
            prop_assert!(easy.len() <= hard.len(), "{:?} vs {:?}", easy, hard);
            if let (Some(e), Some(h)) = (easy.last(), hard.last()) {
                prop_assert!(e.bitrate <= h.bitrate * (1.0 + 1e-9));
            }
        }
    }
}
