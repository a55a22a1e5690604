//! What players measure: per (client network, appliance), how fast the
//! appliance really serves that network, from the per-segment samples
//! playback heartbeats carry. Pure: every operation takes `now`.
//!
//! - **Decay.** Estimates are exponentially weighted in time (`half_life`):
//!   an old observation counts half as much every half-life, so a path that
//!   got slow shows within minutes and one that recovered forgets its past.
//! - **Robust to outliers.** A heartbeat's samples for one appliance become
//!   one observation: their median throughput and time to first byte (one
//!   freak segment does not move it); errors count apart, as a rate.
//! - **Robust to a liar.** A play's weight in an estimate is capped
//!   (`MAX_PLAY_WEIGHT` per half-life): a single client reporting absurdly
//!   slow or fast downloads shifts the estimate by a bounded share, however
//!   often it reports.
//! - **Bounded.** At most `max_networks` client networks are tracked, the
//!   least recently reported dropped first.
//! - **Shared.** Each instance hears only the heartbeats sent to it. Its own
//!   paths' decayed sums go to the store (`take_dirty`), the others' come
//!   back (`set_remote`), and an estimate adds them up: the observations of
//!   every instance, each decayed from when it was taken. (A play whose
//!   heartbeats reach two instances may weigh twice its cap; players keep
//!   to one.)

use std::collections::HashMap;
use std::time::Duration;

/// One downloaded segment as a player reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub appliance: String,
    pub bytes: u64,
    /// Request to first byte.
    pub ttfb_ms: f64,
    /// Request to last byte.
    pub download_ms: f64,
    /// The download failed (`bytes` may be partial).
    pub error: bool,
}

/// What is known of one (network, appliance) path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Decayed mean of observed throughputs, bits per second.
    pub throughput_bps: f64,
    pub ttfb_ms: f64,
    /// Decayed share of failed segments.
    pub error_rate: f64,
    /// Decayed weight of the observations behind it (about the number of
    /// recent heartbeats, capped per play).
    pub weight: f64,
    /// 0 to 1: how far the estimate can be trusted (weight against
    /// `CONFIDENT_WEIGHT`).
    pub confidence: f64,
}

/// The weight at which an estimate is fully trusted.
pub const CONFIDENT_WEIGHT: f64 = 8.0;
/// A play's most weight in one path's estimate per half-life.
pub const MAX_PLAY_WEIGHT: f64 = 2.0;

/// One path's decayed sums, as they are shared between instances: weight,
/// weight × throughput, × time to first byte, × error share, decayed to `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    pub w: f64,
    pub tput: f64,
    pub ttfb: f64,
    pub err: f64,
    pub at: u64,
}

impl Sums {
    fn decayed(self, now: u64, half_life: f64) -> Sums {
        let f = factor(self.at, now, half_life);
        Sums {
            w: self.w * f,
            tput: self.tput * f,
            ttfb: self.ttfb * f,
            err: self.err * f,
            at: self.at.max(now),
        }
    }
}

#[derive(Debug, Clone)]
struct Path {
    /// Decayed sums: weight, weight × throughput, × ttfb, × error share.
    w: f64,
    tput: f64,
    ttfb: f64,
    err: f64,
    /// When the sums were last decayed to.
    at: u64,
    /// Per play: its decayed weight in this path, and when.
    plays: HashMap<String, (f64, u64)>,
    /// `plays`' size after its last pruning: it is pruned again when it has
    /// doubled, so a path with many plays is not scanned at every heartbeat.
    pruned: usize,
}

impl Path {
    fn decay_to(&mut self, now: u64, half_life: f64) {
        let f = factor(self.at, now, half_life);
        self.w *= f;
        self.tput *= f;
        self.ttfb *= f;
        self.err *= f;
        self.at = self.at.max(now);
    }
}

fn factor(from: u64, to: u64, half_life: f64) -> f64 {
    0.5f64.powf(to.saturating_sub(from) as f64 / half_life.max(1.0))
}

/// Every tracked path.
#[derive(Debug, Clone)]
pub struct Paths {
    half_life: f64,
    max_networks: usize,
    /// network → (last reported, appliance → path): what this instance took.
    nets: HashMap<String, (u64, HashMap<String, Path>)>,
    /// (network, appliance) observed here since the last `take_dirty`.
    dirty: std::collections::HashSet<(String, String)>,
    /// (network, appliance) → instance → its sums: what the others took.
    remote: HashMap<(String, String), HashMap<String, Sums>>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Paths {
    pub fn new(half_life: Duration, max_networks: usize) -> Paths {
        Paths {
            half_life: half_life.as_secs_f64(),
            max_networks: max_networks.max(1),
            nets: HashMap::new(),
            dirty: std::collections::HashSet::new(),
            remote: HashMap::new(),
        }
    }

    /// The sums of the paths observed here since the last call, at `now`,
    /// for the other instances.
    pub fn take_dirty(&mut self, now: u64) -> Vec<(String, String, Sums)> {
        let half_life = self.half_life;
        let mut out = Vec::with_capacity(self.dirty.len());
        for (net, appliance) in self.dirty.drain() {
            if let Some(p) = self.nets.get(&net).and_then(|n| n.1.get(&appliance)) {
                let s = Sums {
                    w: p.w,
                    tput: p.tput,
                    ttfb: p.ttfb,
                    err: p.err,
                    at: p.at,
                };
                out.push((net, appliance, s.decayed(now, half_life)));
            }
        }
        out
    }

    /// Another instance's sums for a path (newer replace older). Paths of
    /// networks beyond the bound are not taken; decayed ones are dropped.
    pub fn set_remote(&mut self, instance: &str, net: &str, appliance: &str, sums: Sums, now: u64) {
        let key = (net.to_owned(), appliance.to_owned());
        if !self.remote.contains_key(&key)
            && !self.nets.contains_key(net)
            && self.remote.len() >= self.max_networks.saturating_mul(8)
        {
            let half_life = self.half_life;
            self.remote.retain(|_, by| {
                by.retain(|_, s| s.decayed(now, half_life).w > 0.01);
                !by.is_empty()
            });
            if self.remote.len() >= self.max_networks.saturating_mul(8) {
                return;
            }
        }
        let by = self.remote.entry(key).or_default();
        match by.get(instance) {
            Some(old) if old.at > sums.at => {}
            _ => {
                by.insert(instance.to_owned(), sums);
            }
        }
    }

    /// Take one heartbeat's samples from `play` in client network `net`.
    pub fn observe(&mut self, net: &str, play: &str, samples: &[Sample], now: u64) {
        if samples.is_empty() {
            return;
        }
        if !self.nets.contains_key(net) && self.nets.len() >= self.max_networks {
            let oldest = self
                .nets
                .iter()
                .min_by(|a, b| a.1.0.cmp(&b.1.0).then(a.0.cmp(b.0)))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.nets.remove(&k);
            }
        }
        let half_life = self.half_life;
        let entry = self
            .nets
            .entry(net.to_owned())
            .or_insert_with(|| (now, HashMap::new()));
        entry.0 = entry.0.max(now);
        let mut by_appliance: HashMap<&str, Vec<&Sample>> = HashMap::new();
        for s in samples {
            by_appliance
                .entry(s.appliance.as_str())
                .or_default()
                .push(s);
        }
        for (appliance, list) in by_appliance {
            let ok: Vec<&&Sample> = list.iter().filter(|s| !s.error).collect();
            let tput = median(
                ok.iter()
                    .filter(|s| s.download_ms > 0.0)
                    .map(|s| s.bytes as f64 * 8.0 / (s.download_ms / 1000.0))
                    .collect(),
            );
            let ttfb = median(ok.iter().map(|s| s.ttfb_ms).collect());
            let err = list.iter().filter(|s| s.error).count() as f64 / list.len() as f64;
            self.dirty.insert((net.to_owned(), appliance.to_owned()));
            let path = entry.1.entry(appliance.to_owned()).or_insert_with(|| Path {
                w: 0.0,
                tput: 0.0,
                ttfb: 0.0,
                err: 0.0,
                at: now,
                plays: HashMap::new(),
                pruned: 0,
            });
            path.decay_to(now, half_life);
            // The play's room under its cap, after its own decay.
            let (had, at) = path.plays.get(play).copied().unwrap_or((0.0, now));
            let had = had * factor(at, now, half_life);
            let w = (1.0f64).min(MAX_PLAY_WEIGHT - had).max(0.0);
            path.plays.insert(play.to_owned(), (had + w, now));
            if path.plays.len() > 2 * path.pruned.max(32) {
                path.plays
                    .retain(|_, (pw, pat)| *pw * factor(*pat, now, half_life) > 0.01);
                path.pruned = path.plays.len();
            }
            if w <= 0.0 {
                continue;
            }
            // A batch of only failures says nothing of throughput: it
            // counts at the last known speed, as an error rate.
            let (t, f) = match (tput, ttfb) {
                (Some(t), Some(f)) => (t, f),
                _ if path.w > 0.0 => (path.tput / path.w, path.ttfb / path.w),
                _ => (0.0, 0.0),
            };
            path.w += w;
            path.tput += w * t;
            path.ttfb += w * f;
            path.err += w * err;
        }
    }

    /// The estimate for `appliance` from client network `net` at `now`:
    /// this instance's observations and the others', each decayed.
    pub fn estimate(&self, net: &str, appliance: &str, now: u64) -> Option<Estimate> {
        let hl = self.half_life;
        let mut total = Sums {
            w: 0.0,
            tput: 0.0,
            ttfb: 0.0,
            err: 0.0,
            at: now,
        };
        let mut add = |s: Sums| {
            let d = s.decayed(now, hl);
            total.w += d.w;
            total.tput += d.tput;
            total.ttfb += d.ttfb;
            total.err += d.err;
        };
        if let Some(p) = self.nets.get(net).and_then(|n| n.1.get(appliance)) {
            add(Sums {
                w: p.w,
                tput: p.tput,
                ttfb: p.ttfb,
                err: p.err,
                at: p.at,
            });
        }
        if !self.remote.is_empty()
            && let Some(by) = self.remote.get(&(net.to_owned(), appliance.to_owned()))
        {
            by.values().for_each(|s| add(*s));
        }
        if total.w <= 1e-9 {
            return None;
        }
        Some(Estimate {
            throughput_bps: total.tput / total.w,
            ttfb_ms: total.ttfb / total.w,
            error_rate: total.err / total.w,
            weight: total.w,
            confidence: (total.w / CONFIDENT_WEIGHT).min(1.0),
        })
    }

    /// Every (network, appliance, estimate) known at `now`, networks most
    /// recently reported first.
    pub fn all(&self, now: u64) -> Vec<(&str, &str, Estimate)> {
        // (last reported, network, appliance) over this instance's paths
        // and the others'.
        let mut keys: Vec<(u64, &str, &str)> = Vec::new();
        for (net, (last, paths)) in &self.nets {
            keys.extend(paths.keys().map(|a| (*last, net.as_str(), a.as_str())));
        }
        for ((net, a), by) in &self.remote {
            let here = self.nets.get(net).is_some_and(|n| n.1.contains_key(a));
            if !here {
                let last = by.values().map(|s| s.at).max().unwrap_or(0);
                keys.push((last, net.as_str(), a.as_str()));
            }
        }
        keys.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)).then(x.2.cmp(y.2)));
        keys.into_iter()
            .filter_map(|(_, net, a)| Some((net, a, self.estimate(net, a, now)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(appliance: &str, mbps: f64, ttfb_ms: f64) -> Sample {
        // 1 MB in the time `mbps` takes.
        Sample {
            appliance: appliance.into(),
            bytes: 1_000_000,
            ttfb_ms,
            download_ms: 8.0 / mbps * 1000.0,
            error: false,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_heartbeat_is_one_observation_of_its_median() {
        let mut p = Paths::new(HOUR, 100);
        p.observe(
            "n1",
            "play-1",
            &[
                seg("a", 10.0, 20.0),
                seg("a", 30.0, 40.0),
                seg("a", 9000.0, 1.0),
            ],
            1000,
        );
        let e = p.estimate("n1", "a", 1000).unwrap();
        assert!((e.throughput_bps - 30e6).abs() < 1.0, "{e:?}");
        assert_eq!(e.ttfb_ms, 20.0);
        assert_eq!(e.weight, 1.0);
        assert!((e.confidence - 1.0 / CONFIDENT_WEIGHT).abs() < 1e-9);
        assert!(p.estimate("n1", "b", 1000).is_none());
        assert!(p.estimate("n2", "a", 1000).is_none());
    }

    #[test]
    fn old_observations_fade_and_a_slow_path_shows() {
        let mut p = Paths::new(HOUR, 100);
        for k in 0..8 {
            p.observe("n1", &format!("p{k}"), &[seg("a", 50.0, 10.0)], 0);
        }
        // Two hours later the path got slow: a few new plays outweigh the
        // quartered old ones.
        for k in 0..4 {
            p.observe("n1", &format!("q{k}"), &[seg("a", 2.0, 300.0)], 7200);
        }
        let e = p.estimate("n1", "a", 7200).unwrap();
        // 8 × 1/4 at 50 Mbit/s against 4 × 1 at 2 Mbit/s.
        assert!(
            (e.throughput_bps - (2.0 * 50e6 + 4.0 * 2e6) / 6.0).abs() < 1.0,
            "{e:?}"
        );
        assert!((e.weight - 6.0).abs() < 1e-9);
    }

    #[test]
    fn one_play_cannot_outweigh_the_others() {
        let mut p = Paths::new(HOUR, 100);
        for k in 0..6 {
            p.observe("n1", &format!("honest-{k}"), &[seg("a", 40.0, 10.0)], 100);
        }
        for t in 0..100 {
            p.observe("n1", "liar", &[seg("a", 0.01, 5000.0)], 100 + t);
        }
        let e = p.estimate("n1", "a", 200).unwrap();
        // The liar counts at most MAX_PLAY_WEIGHT against six honest plays.
        assert!(e.throughput_bps > 40e6 * 6.0 / 8.0 - 1e6, "{e:?}");
    }

    #[test]
    fn failures_count_as_an_error_rate_and_networks_are_bounded() {
        let mut p = Paths::new(HOUR, 2);
        let mut bad = seg("a", 10.0, 10.0);
        bad.error = true;
        p.observe("n1", "p1", &[seg("a", 10.0, 10.0), bad.clone()], 10);
        p.observe("n1", "p2", std::slice::from_ref(&bad), 11);
        let e = p.estimate("n1", "a", 11).unwrap();
        assert!((e.error_rate - 0.75).abs() < 1e-3, "{e:?}");
        assert!(
            (e.throughput_bps - 10e6).abs() < 1.0,
            "failures keep the last speed"
        );
        p.observe("n2", "p3", &[seg("a", 10.0, 10.0)], 12);
        p.observe("n3", "p4", &[seg("a", 10.0, 10.0)], 13);
        assert!(
            p.estimate("n1", "a", 13).is_none(),
            "the least recent network left"
        );
        let all = p.all(13);
        let nets: Vec<&str> = all.iter().map(|x| x.0).collect();
        assert_eq!(nets, ["n3", "n2"]);
    }

    /// Two instances, each hearing half the players of one network: each
    /// estimate counts both halves once shared, a newer share replaces the
    /// older, and what is not observed again is written once.
    #[test]
    fn instances_add_up_each_others_observations() {
        let (mut a, mut b) = (Paths::new(HOUR, 100), Paths::new(HOUR, 100));
        for k in 0..4 {
            a.observe("n1", &format!("pa{k}"), &[seg("x", 4.0, 90.0)], 1000);
            b.observe("n1", &format!("pb{k}"), &[seg("x", 12.0, 30.0)], 1000);
        }
        let from_a = a.take_dirty(1000);
        assert_eq!(from_a.len(), 1);
        assert!(
            a.take_dirty(1001).is_empty(),
            "written once until observed again"
        );
        for (net, app, sums) in &from_a {
            b.set_remote("A", net, app, *sums, 1000);
        }
        let e = b.estimate("n1", "x", 1000).unwrap();
        assert_eq!(e.weight, 8.0, "both instances' four plays");
        assert!((e.throughput_bps - 8e6).abs() < 1.0, "{e:?}");
        assert_eq!(e.ttfb_ms, 60.0);
        assert_eq!(e.confidence, 1.0);
        // A's later share replaces its earlier one; an older one does not.
        let newer = Sums {
            at: 1000 + 3600,
            ..from_a[0].2
        };
        b.set_remote("A", "n1", "x", newer, 1000 + 3600);
        b.set_remote("A", "n1", "x", from_a[0].2, 1000 + 3600);
        let e = b.estimate("n1", "x", 1000 + 3600).unwrap();
        assert_eq!(
            e.weight,
            4.0 / 2.0 + 4.0,
            "A's as shared, B's own decayed a half-life"
        );
        // A network only another instance heard of is listed too.
        b.set_remote("A", "n9", "x", from_a[0].2, 1000 + 3600);
        let all: Vec<(&str, &str)> = b
            .all(1000 + 3600)
            .iter()
            .map(|(n, a, _)| (*n, *a))
            .collect();
        assert!(
            all.contains(&("n9", "x")) && all.contains(&("n1", "x")),
            "{all:?}"
        );
    }
}
