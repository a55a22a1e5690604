//! What simulated viewers measured. Each viewer task owns one [`PlayStats`]
//! and hands it back when it stops; the runner merges them. Live counters
//! for the progress line are separate atomics ([`Live`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::histogram;

#[derive(Debug, Clone)]
pub struct PlayStats {
    /// Plays steering answered with 200.
    pub started: u64,
    /// Plays refused or unanswered, by "<status> <code>" or fetch error.
    pub refused: BTreeMap<String, u64>,
    /// Plays that went wrong after the answer, by what failed.
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each key of `refused` and `errors`.
    pub samples: BTreeMap<String, String>,
    /// Plays that played to the end of the title or of `--watch`.
    pub completed: u64,
    /// Plays cut short by the end of `--duration`.
    pub cut: u64,
    /// Plays that began at a bookmark rather than at the start.
    pub resumed: u64,
    /// POST /v1/play, sent to answered (µs).
    pub answer: Histogram<u64>,
    /// Pressing play to playback start (µs).
    pub startup: Histogram<u64>,
    pub rebuffers: u64,
    pub stalled: Duration,
    pub played: Duration,
    /// Pathway changes because a request failed.
    pub failovers: u64,
    /// Pathway changes because content steering reordered the pathways.
    pub steered: u64,
    /// Variant changes by the ABR.
    pub switches: u64,
    /// Body bytes from appliances (playlists, init and media segments).
    pub bytes: u64,
    pub segments: u64,
    /// Sum over segments of BANDWIDTH × duration (bit), for the average.
    pub bits_selected: f64,
    pub media: Duration,
    pub bytes_by_pathway: BTreeMap<String, u64>,
    pub plays_by_source: BTreeMap<String, u64>,
    pub plays_by_primary: BTreeMap<String, u64>,
    /// Why steering chose each play's primary ("isp-embedded", "origin", ...).
    pub plays_by_reason: BTreeMap<String, u64>,
    pub bookmarks: Outcomes,
    /// POST /v1/plays/{id}/heartbeat, the last of each play included.
    pub heartbeats: Outcomes,
    pub deletes: Outcomes,
    /// Clear Key licences asked of steering for protected titles.
    pub licences: Outcomes,
    pub steering_polls: Outcomes,
    /// Moves to another steering instance because the one in use failed.
    pub steering_failovers: u64,
    /// Segments (init and media) whose bytes matched the packaged file (`--verify`).
    pub verified: u64,
    /// Segments whose bytes did not match, by object key.
    pub wrong: BTreeMap<String, u64>,
}

/// Requests of one kind that succeeded and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcomes {
    pub ok: u64,
    pub failed: u64,
}

impl Outcomes {
    pub fn count(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    fn merge(&mut self, o: Outcomes) {
        self.ok += o.ok;
        self.failed += o.failed;
    }
}

impl Default for PlayStats {
    fn default() -> Self {
        PlayStats {
            started: 0,
            refused: BTreeMap::new(),
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            completed: 0,
            cut: 0,
            resumed: 0,
            answer: histogram(),
            startup: histogram(),
            rebuffers: 0,
            stalled: Duration::ZERO,
            played: Duration::ZERO,
            failovers: 0,
            steered: 0,
            switches: 0,
            bytes: 0,
            segments: 0,
            bits_selected: 0.0,
            media: Duration::ZERO,
            bytes_by_pathway: BTreeMap::new(),
            plays_by_source: BTreeMap::new(),
            plays_by_primary: BTreeMap::new(),
            plays_by_reason: BTreeMap::new(),
            bookmarks: Outcomes::default(),
            heartbeats: Outcomes::default(),
            deletes: Outcomes::default(),
            licences: Outcomes::default(),
            steering_polls: Outcomes::default(),
            steering_failovers: 0,
            verified: 0,
            wrong: BTreeMap::new(),
        }
    }
}

fn add(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_owned(), n);
        }
    }
}

impl PlayStats {
    pub fn refused(&mut self, key: &str, message: impl FnOnce() -> String) {
        add(&mut self.refused, key, 1);
        self.sample(key, message);
    }

    pub fn error(&mut self, key: &str, message: impl FnOnce() -> String) {
        add(&mut self.errors, key, 1);
        self.sample(key, message);
    }

    fn sample(&mut self, key: &str, message: impl FnOnce() -> String) {
        if !self.samples.contains_key(key) {
            self.samples.insert(key.to_owned(), message());
        }
    }

    pub fn answered(&mut self, latency: Duration) {
        self.answer.saturating_record(micros(latency));
    }

    pub fn started_playback(&mut self, startup: Duration) {
        self.startup.saturating_record(micros(startup));
    }

    pub fn appliance_bytes(&mut self, pathway: &str, bytes: u64) {
        self.bytes += bytes;
        add(&mut self.bytes_by_pathway, pathway, bytes);
    }

    pub fn segment(&mut self, bandwidth: u64, duration: Duration) {
        self.segments += 1;
        self.bits_selected += bandwidth as f64 * duration.as_secs_f64();
        self.media += duration;
    }

    /// A segment checked against its packaged file.
    pub fn checked(&mut self, key: &str, right: bool) {
        if right {
            self.verified += 1;
        } else {
            add(&mut self.wrong, key, 1);
        }
    }

    pub fn play_from(&mut self, source: &str, primary: &str, reason: &str) {
        add(&mut self.plays_by_source, source, 1);
        add(&mut self.plays_by_primary, primary, 1);
        add(&mut self.plays_by_reason, reason, 1);
    }

    /// Stall time over stall plus play time; 0 when nothing played.
    pub fn rebuffer_ratio(&self) -> f64 {
        let total = (self.stalled + self.played).as_secs_f64();
        if total > 0.0 {
            self.stalled.as_secs_f64() / total
        } else {
            0.0
        }
    }

    /// Average BANDWIDTH of the variants fetched, weighted by media time.
    pub fn avg_bitrate(&self) -> f64 {
        let secs = self.media.as_secs_f64();
        if secs > 0.0 {
            self.bits_selected / secs
        } else {
            0.0
        }
    }

    pub fn merge(&mut self, o: &PlayStats) {
        self.started += o.started;
        for (k, n) in &o.refused {
            add(&mut self.refused, k, *n);
        }
        for (k, n) in &o.errors {
            add(&mut self.errors, k, *n);
        }
        for (k, m) in &o.samples {
            self.samples.entry(k.clone()).or_insert_with(|| m.clone());
        }
        self.verified += o.verified;
        for (k, n) in &o.wrong {
            add(&mut self.wrong, k, *n);
        }
        self.completed += o.completed;
        self.cut += o.cut;
        self.resumed += o.resumed;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.answer.add(&o.answer);
        let _ = self.startup.add(&o.startup);
        self.rebuffers += o.rebuffers;
        self.stalled += o.stalled;
        self.played += o.played;
        self.failovers += o.failovers;
        self.steered += o.steered;
        self.switches += o.switches;
        self.bytes += o.bytes;
        self.segments += o.segments;
        self.bits_selected += o.bits_selected;
        self.media += o.media;
        for (k, n) in &o.bytes_by_pathway {
            add(&mut self.bytes_by_pathway, k, *n);
        }
        for (k, n) in &o.plays_by_source {
            add(&mut self.plays_by_source, k, *n);
        }
        for (k, n) in &o.plays_by_primary {
            add(&mut self.plays_by_primary, k, *n);
        }
        for (k, n) in &o.plays_by_reason {
            add(&mut self.plays_by_reason, k, *n);
        }
        self.bookmarks.merge(o.bookmarks);
        self.heartbeats.merge(o.heartbeats);
        self.deletes.merge(o.deletes);
        self.licences.merge(o.licences);
        self.steering_polls.merge(o.steering_polls);
        self.steering_failovers += o.steering_failovers;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counters the once-a-second progress line reads, shared by all viewers.
#[derive(Debug, Default)]
pub struct Live {
    pub plays: AtomicU64,
    pub playing: AtomicU64,
    pub rebuffers: AtomicU64,
    pub failovers: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_merge() {
        assert_eq!(
            (
                PlayStats::default().rebuffer_ratio(),
                PlayStats::default().avg_bitrate()
            ),
            (0.0, 0.0)
        );
        let mut a = PlayStats {
            played: Duration::from_secs(9),
            stalled: Duration::from_secs(1),
            ..PlayStats::default()
        };
        a.segment(1_000_000, Duration::from_secs(4));
        a.appliance_bytes("oca-a1", 10);
        a.refused("403 stream_limit", || "first".into());
        a.refused("403 stream_limit", || "second".into());
        a.play_from("127.1.0.9", "oca-a1", "isp-embedded");
        let mut b = PlayStats {
            played: Duration::from_secs(10),
            ..PlayStats::default()
        };
        b.segment(3_000_000, Duration::from_secs(4));
        b.appliance_bytes("oca-a1", 5);
        b.appliance_bytes("oca-a2", 1);
        b.refused("403 stream_limit", || "third".into());
        b.error("all_pathways_failed", || "x".into());
        b.answered(Duration::from_millis(3));
        b.bookmarks.count(true);
        b.bookmarks.count(false);
        a.merge(&b);
        assert!((a.rebuffer_ratio() - 1.0 / 20.0).abs() < 1e-12);
        assert_eq!(a.avg_bitrate(), 2_000_000.0);
        assert_eq!(a.bytes, 16);
        assert_eq!(a.bytes_by_pathway["oca-a1"], 15);
        assert_eq!(a.refused["403 stream_limit"], 3);
        assert_eq!(a.samples["403 stream_limit"], "first");
        assert_eq!(a.errors["all_pathways_failed"], 1);
        assert_eq!(a.answer.len(), 1);
        assert_eq!(a.bookmarks, Outcomes { ok: 1, failed: 1 });
        assert_eq!(a.segments, 2);
    }
}
