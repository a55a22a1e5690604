//! The result of a `players` run: figures with stable names for `--json`, and
//! a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::play_stats::{Outcomes, PlayStats};
use crate::report::Percentiles;

/// Field names are part of the interface (scripts and tests read them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlayersReport {
    /// The run's parameters, at the top level of the JSON.
    #[serde(flatten)]
    pub setup: Setup,
    pub plays: Plays,
    /// POST /v1/play until the answer, accepted plays only.
    pub play_answer_us: Percentiles,
    /// Pressing play until playback starts.
    pub startup_us: Percentiles,
    /// Plays that reached playback.
    pub startups: u64,
    pub rebuffers: u64,
    pub rebuffer_s: f64,
    pub played_s: f64,
    /// rebuffer_s / (rebuffer_s + played_s).
    pub rebuffer_ratio: f64,
    pub failovers: u64,
    pub steering_switches: u64,
    pub variant_switches: u64,
    /// Body bytes from appliances (playlists, init and media segments).
    pub bytes: u64,
    pub segments: u64,
    pub mbit_per_s: f64,
    /// Mean BANDWIDTH of the variants segments were fetched from, weighted
    /// by segment duration.
    pub avg_bitrate_bps: f64,
    pub bytes_by_pathway: BTreeMap<String, u64>,
    pub plays_by_source: BTreeMap<String, u64>,
    pub plays_by_primary: BTreeMap<String, u64>,
    /// Steering's reason for each play's primary: "isp-embedded", "region-ixp",
    /// "any-appliance", "saturated" or "origin".
    pub plays_by_reason: BTreeMap<String, u64>,
    pub bookmarks: Outcomes,
    pub heartbeats: Outcomes,
    pub deletes: Outcomes,
    pub licences: Outcomes,
    pub steering_polls: Outcomes,
    /// Moves to another steering instance (`--steering` lists several)
    /// because the one in use failed.
    pub steering_failovers: u64,
    /// Segments whose bytes matched the packaged files (`--verify`; else 0).
    pub verified_segments: u64,
    /// Segments whose bytes did not, by object key (`--verify`).
    pub wrong_bytes: BTreeMap<String, u64>,
    /// Viewer tasks that did not report (always 0 unless a bug).
    pub viewers_lost: usize,
    /// The first message seen for each failure key.
    pub error_samples: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plays {
    /// Answered 200 by steering.
    pub started: u64,
    /// Refused or unanswered.
    pub failed: u64,
    /// "<status> <code>" (e.g. "403 stream_limit") or a fetch error → count.
    pub failed_by: BTreeMap<String, u64>,
    /// Played to the end of the title or of --watch.
    pub completed: u64,
    /// Still playing when the run ended.
    pub cut: u64,
    /// Started at a bookmark.
    pub resumed: u64,
    /// Went wrong after the answer, by what failed.
    pub errors: BTreeMap<String, u64>,
}

/// Run parameters echoed in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Setup {
    pub steering: String,
    pub title: String,
    pub device: String,
    pub profile: String,
    pub viewers: usize,
    pub tokens: usize,
    /// Source addresses viewers were bound to (round-robin); empty: the default.
    pub sources: Vec<String>,
    pub duration_s: f64,
    /// Longest play, from pressing play; `null`: to the end of the title.
    pub watch_s: Option<f64>,
    pub ramp_s: f64,
}

impl PlayersReport {
    pub fn new(setup: Setup, s: &PlayStats, viewers_lost: usize) -> PlayersReport {
        PlayersReport {
            plays: Plays {
                started: s.started,
                failed: s.refused.values().sum(),
                failed_by: s.refused.clone(),
                completed: s.completed,
                cut: s.cut,
                resumed: s.resumed,
                errors: s.errors.clone(),
            },
            play_answer_us: Percentiles::of(&s.answer),
            startup_us: Percentiles::of(&s.startup),
            startups: s.startup.len(),
            rebuffers: s.rebuffers,
            rebuffer_s: s.stalled.as_secs_f64(),
            played_s: s.played.as_secs_f64(),
            rebuffer_ratio: s.rebuffer_ratio(),
            failovers: s.failovers,
            steering_switches: s.steered,
            variant_switches: s.switches,
            bytes: s.bytes,
            segments: s.segments,
            mbit_per_s: s.bytes as f64 * 8.0 / 1e6 / setup.duration_s.max(1e-9),
            avg_bitrate_bps: s.avg_bitrate(),
            bytes_by_pathway: s.bytes_by_pathway.clone(),
            plays_by_source: s.plays_by_source.clone(),
            plays_by_primary: s.plays_by_primary.clone(),
            plays_by_reason: s.plays_by_reason.clone(),
            bookmarks: s.bookmarks,
            heartbeats: s.heartbeats,
            deletes: s.deletes,
            licences: s.licences,
            steering_polls: s.steering_polls,
            steering_failovers: s.steering_failovers,
            verified_segments: s.verified,
            wrong_bytes: s.wrong.clone(),
            viewers_lost,
            error_samples: s.samples.clone(),
            setup,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let p = &self.plays;
        let watch = self
            .setup
            .watch_s
            .map_or("to the end of the title".to_owned(), |w| {
                format!("at most {w} s")
            });
        let sources = if self.setup.sources.is_empty() {
            "default source address".to_owned()
        } else {
            format!("from {}", self.setup.sources.join(", "))
        };
        let _ = writeln!(o, "steering    {}", self.setup.steering);
        let _ = writeln!(
            o,
            "viewers     {} for {} s (ramp {} s), {} token(s), {sources}",
            self.setup.viewers, self.setup.duration_s, self.setup.ramp_s, self.setup.tokens
        );
        let _ = writeln!(
            o,
            "plays of    {} on {} as {}, each {watch}",
            self.setup.title, self.setup.device, self.setup.profile
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "plays       {} started, {} failed; {} completed, {} cut by the end, {} resumed",
            p.started, p.failed, p.completed, p.cut, p.resumed
        );
        let _ = writeln!(
            o,
            "{:<11} {:>9} {:>9} {:>9} {:>9}",
            "ms", "p50", "p90", "p99", "max"
        );
        for (name, q) in [
            ("startup", &self.startup_us),
            ("play answer", &self.play_answer_us),
        ] {
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = writeln!(
                o,
                "{name:<11} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                ms(q.p50),
                ms(q.p90),
                ms(q.p99),
                ms(q.max)
            );
        }
        let _ = writeln!(
            o,
            "rebuffers   {} ({:.3} s stalled, {:.1} s played, ratio {:.4})",
            self.rebuffers, self.rebuffer_s, self.played_s, self.rebuffer_ratio
        );
        let _ = writeln!(
            o,
            "switches    {} failovers, {} by content steering, {} variant changes",
            self.failovers, self.steering_switches, self.variant_switches
        );
        let _ = writeln!(
            o,
            "bytes       {} in {} segments, {:.3} Mbit/s; average variant {:.0} kbit/s",
            self.bytes,
            self.segments,
            self.mbit_per_s,
            self.avg_bitrate_bps / 1000.0
        );
        let total = self.bytes.max(1) as f64;
        let by_pathway: Vec<String> = self
            .bytes_by_pathway
            .iter()
            .map(|(k, n)| format!("{k} {n} ({:.0}%)", *n as f64 * 100.0 / total))
            .collect();
        let counts = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(o, "by pathway  {}", by_pathway.join(", "));
        let _ = writeln!(o, "by source   {}", counts(&self.plays_by_source));
        let _ = writeln!(o, "by primary  {}", counts(&self.plays_by_primary));
        let _ = writeln!(o, "why         {}", counts(&self.plays_by_reason));
        let _ = writeln!(
            o,
            "requests    heartbeats {}/{} ok, bookmarks {}/{} ok, deletes {}/{} ok, \
             licences {}/{} ok, steering polls {}/{} ok, {} moves to another steering instance",
            self.heartbeats.ok,
            self.heartbeats.ok + self.heartbeats.failed,
            self.bookmarks.ok,
            self.bookmarks.ok + self.bookmarks.failed,
            self.deletes.ok,
            self.deletes.ok + self.deletes.failed,
            self.licences.ok,
            self.licences.ok + self.licences.failed,
            self.steering_polls.ok,
            self.steering_polls.ok + self.steering_polls.failed,
            self.steering_failovers,
        );
        for (label, map) in [("failed", &p.failed_by), ("errors", &p.errors)] {
            for (k, n) in map {
                let sample = self.error_samples.get(k).map_or("", String::as_str);
                let _ = writeln!(o, "{label:<11} {k} ×{n}: {sample}");
            }
        }
        if let Some(s) = self.error_samples.get("steering_poll") {
            let _ = writeln!(o, "steering    poll failed: {s}");
        }
        if self.verified_segments > 0 || !self.wrong_bytes.is_empty() {
            let wrong: u64 = self.wrong_bytes.values().sum();
            let _ = writeln!(
                o,
                "verified    {} segments matched the packaged files, {wrong} did not",
                self.verified_segments
            );
            for (k, n) in &self.wrong_bytes {
                let _ = writeln!(o, "WRONG BYTES {k} ×{n}");
            }
        }
        if self.viewers_lost > 0 {
            let _ = writeln!(
                o,
                "WARNING     {} viewers did not report",
                self.viewers_lost
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> PlayersReport {
        let mut s = PlayStats {
            started: 3,
            completed: 2,
            cut: 1,
            played: Duration::from_secs(19),
            stalled: Duration::from_secs(1),
            rebuffers: 1,
            failovers: 1,
            ..PlayStats::default()
        };
        for ms in [100, 200, 300] {
            s.started_playback(Duration::from_millis(ms));
            s.answered(Duration::from_millis(ms / 10));
        }
        s.segment(2_000_000, Duration::from_secs(4));
        s.appliance_bytes("oca-a1", 750);
        s.appliance_bytes("oca-a2", 250);
        s.refused("403 stream_limit", || {
            "status 403: {\"code\":\"stream_limit\"}".into()
        });
        s.error("all_pathways_failed", || {
            "segment http://x/s: connect".into()
        });
        s.play_from("127.1.0.9", "oca-a1", "isp-embedded");
        s.bookmarks.count(true);
        s.checked("titles/t1/v0/seg1.m4s", true);
        s.checked("titles/t1/v0/seg2.m4s", false);
        let setup = Setup {
            steering: "http://127.0.0.1:1".into(),
            title: "t1".into(),
            device: "browser".into(),
            profile: "main".into(),
            viewers: 2,
            tokens: 1,
            sources: vec!["127.1.0.9".into()],
            duration_s: 10.0,
            watch_s: None,
            ramp_s: 0.0,
        };
        PlayersReport::new(setup, &s, 0)
    }

    #[test]
    fn json_field_names_are_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        for f in [
            "steering",
            "title",
            "device",
            "profile",
            "viewers",
            "tokens",
            "sources",
            "duration_s",
            "watch_s",
            "ramp_s",
            "plays",
            "play_answer_us",
            "startup_us",
            "startups",
            "rebuffers",
            "rebuffer_s",
            "played_s",
            "rebuffer_ratio",
            "failovers",
            "steering_switches",
            "variant_switches",
            "bytes",
            "segments",
            "mbit_per_s",
            "avg_bitrate_bps",
            "bytes_by_pathway",
            "plays_by_source",
            "plays_by_primary",
            "plays_by_reason",
            "bookmarks",
            "heartbeats",
            "deletes",
            "licences",
            "steering_polls",
            "steering_failovers",
            "verified_segments",
            "wrong_bytes",
            "viewers_lost",
            "error_samples",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        assert_eq!(v["plays"]["started"], 3);
        assert_eq!(v["plays"]["failed"], 1);
        assert_eq!(v["plays"]["failed_by"]["403 stream_limit"], 1);
        assert_eq!(v["plays"]["errors"]["all_pathways_failed"], 1);
        assert_eq!(v["startups"], 3);
        let p99 = v["startup_us"]["p99"].as_u64().unwrap();
        assert!((299_000..=301_000).contains(&p99), "{p99}");
        assert_eq!(v["rebuffer_ratio"], 0.05);
        assert_eq!(v["bytes"], 1000);
        assert_eq!(v["bytes_by_pathway"]["oca-a2"], 250);
        assert_eq!(v["avg_bitrate_bps"], 2_000_000.0);
        assert_eq!(v["plays_by_source"]["127.1.0.9"], 1);
        assert_eq!(v["bookmarks"]["ok"], 1);
        assert_eq!(v["watch_s"], serde_json::Value::Null);
        assert_eq!(v["verified_segments"], 1);
        assert_eq!(v["wrong_bytes"]["titles/t1/v0/seg2.m4s"], 1);
    }

    #[test]
    fn table_shows_the_figures() {
        let t = sample().table();
        for want in [
            "3 started, 1 failed",
            "startup",
            "300.",
            "ratio 0.0500",
            "1 failovers",
            "oca-a1 750 (75%)",
            "127.1.0.9 1",
            "403 stream_limit ×1: status 403",
            "all_pathways_failed ×1",
            "verified    1 segments matched the packaged files, 1 did not",
            "WRONG BYTES titles/t1/v0/seg2.m4s ×1",
            "to the end of the title",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }
}
