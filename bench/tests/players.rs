//! `oca-bench players` against a scripted steering service and appliances:
//! failover, appliances that are down, refused plays, garbage, bad input.

mod support;

use serde_json::Value;
use support::bench;
use support::cdn::{Serve, cdn};

/// Runs `players` for `secs` with one viewer and returns the JSON report.
fn players(steering: &str, secs: u32, extra: &[&str]) -> Value {
    let duration = format!("{secs}s");
    let mut args = vec![
        "players",
        "--steering",
        steering,
        "--token",
        "vt_test",
        "--title",
        "t1",
        "--duration",
        &duration,
        "--timeout",
        "2s",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = bench(&args);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.json()
}

#[test]
fn a_failing_appliance_fails_over_to_the_next_pathway() {
    let c = cdn()
        .appliance("a", Serve::FailSegments)
        .appliance("b", Serve::Ok)
        .segments(4, 0.5)
        .run();
    // A 2 s title in 3 s: one play completes, the next is cut.
    let r = players(&c.url, 3, &["--source-ip", "127.0.0.2"]);
    assert!(r["plays"]["started"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["failovers"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["plays"]["errors"].as_object().unwrap().is_empty(), "{r}");
    // "a" served playlists and init segments only; the media came from "b".
    let a = r["bytes_by_pathway"]["a"].as_u64().unwrap_or(0);
    let b = r["bytes_by_pathway"]["b"].as_u64().unwrap();
    assert!(b > 10 * a.max(1), "a {a}, b {b}: {r}");
    assert!(r["segments"].as_u64().unwrap() >= 4, "{r}");
    assert!(r["plays"]["completed"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["plays_by_source"]["127.0.0.2"], r["plays"]["started"]);
    assert_eq!(r["plays_by_primary"]["a"], r["plays"]["started"]);
    // Every connection came from the --source-ip.
    let peers = c.log.peers.lock().unwrap().clone();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| p.to_string() == "127.0.0.2"),
        "{peers:?}"
    );
    assert!(
        c.count("GET /v1/steering/p0/hls") >= 2,
        "polled, and again on failure"
    );
    // Heartbeats, not bookmarks and DELETE: they carry each media segment's
    // download, the failed ones on "a" too, and the last one ends the play.
    assert_eq!(c.count("DELETE /v1/plays/"), 0);
    assert_eq!(c.count("POST /v1/bookmarks"), 0);
    let beats = c.log.heartbeats.lock().unwrap().clone();
    assert!(r["heartbeats"]["ok"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["heartbeats"]["failed"], 0, "{r}");
    let samples: Vec<&Value> = beats
        .iter()
        .flat_map(|b| b["samples"].as_array().unwrap())
        .collect();
    let failed_on_a = samples
        .iter()
        .filter(|s| s["pathway"] == "a" && s["error"] == true)
        .count();
    assert!(failed_on_a >= 1, "{beats:?}");
    let ok_on_b: Vec<&&Value> = samples
        .iter()
        .filter(|s| s["pathway"] == "b" && s["error"] == false)
        .collect();
    assert!(ok_on_b.len() >= 4, "{beats:?}");
    for s in ok_on_b {
        let (ttfb, total) = (
            s["ttfb_ms"].as_f64().unwrap(),
            s["download_ms"].as_f64().unwrap(),
        );
        assert!(s["bytes"].as_u64().unwrap() > 0 && ttfb <= total, "{s}");
    }
    let ended = beats.iter().filter(|b| b["state"] == "ended").count() as u64;
    assert_eq!(ended, r["plays"]["started"].as_u64().unwrap(), "{beats:?}");
    assert!(
        beats
            .iter()
            .all(|b| b["position"].is_null() || b["position"].as_f64().unwrap() >= 0.0),
        "{beats:?}"
    );
}

#[test]
fn a_viewer_with_every_pathway_down_stops() {
    let c = cdn()
        .appliance("a", Serve::Down)
        .appliance("b", Serve::FailSegments)
        .run();
    let r = players(&c.url, 3, &["--bookmarks"]);
    assert_eq!(r["plays"]["started"], 1, "the viewer gave up: {r}");
    assert_eq!(r["plays"]["errors"]["all_pathways_failed"], 1, "{r}");
    assert_eq!(r["failovers"], 1, "{r}");
    let why = r["error_samples"]["all_pathways_failed"].as_str().unwrap();
    assert!(why.contains("status 503"), "{why}");
    assert_eq!(r["startups"], 0);
    assert_eq!(r["deletes"]["ok"], 1, "the play is still deleted: {r}");
    assert_eq!(r["heartbeats"]["ok"], 0, "--bookmarks: {r}");
}

#[test]
fn a_slow_appliance_makes_the_viewer_rebuffer() {
    // 0.5 s segments that take 0.7 s each: startup waits for two, and the
    // buffer runs dry again and again.
    let c = cdn().appliance("a", Serve::Slow(700)).run();
    let r = players(&c.url, 4, &[]);
    assert!(r["rebuffers"].as_u64().unwrap() >= 1, "{r}");
    let ratio = r["rebuffer_ratio"].as_f64().unwrap();
    assert!(ratio > 0.1 && ratio < 1.0, "{r}");
    let startup = r["startup_us"]["p50"].as_u64().unwrap();
    assert!((1_300_000..2_500_000).contains(&startup), "{r}");
    assert_eq!(r["failovers"], 0, "slow is not failed: {r}");
    // About 0.1 Mbit/s measured: the ABR stays on the lowest variant.
    assert_eq!(r["avg_bitrate_bps"], 500_000.0, "{r}");
}

#[test]
fn refused_plays_are_counted_by_status_and_code() {
    let c = cdn()
        .appliance("a", Serve::Ok)
        .refuse(403, "stream_limit")
        .run();
    let r = players(&c.url, 2, &[]);
    assert_eq!(r["plays"]["started"], 0);
    let n = r["plays"]["failed_by"]["403 stream_limit"]
        .as_u64()
        .unwrap();
    assert!(n >= 1 && n == r["plays"]["failed"].as_u64().unwrap(), "{r}");
    assert_eq!(r["startup_us"]["p99"], 0);
}

#[test]
fn garbage_from_steering_is_an_error_not_a_panic() {
    let c = cdn().appliance("a", Serve::Ok).garbage_master().run();
    let r = players(&c.url, 2, &[]);
    assert!(
        r["plays"]["errors"]["bad_master"].as_u64().unwrap() >= 1,
        "{r}"
    );
    assert_eq!(
        r["heartbeats"]["ok"], r["plays"]["started"],
        "one ending each: {r}"
    );
}

#[test]
fn chunked_answers_and_a_short_watch() {
    let c = cdn()
        .appliance("a", Serve::Ok)
        .segments(20, 0.5)
        .chunked()
        .run();
    let r = players(
        &c.url,
        3,
        &["--watch", "1s", "--report-every", "500ms", "--bookmarks"],
    );
    // 1 s plays of a 10 s title: several, each ended by --watch, none cut.
    let started = r["plays"]["started"].as_u64().unwrap();
    assert!(started >= 2, "{r}");
    assert!(r["plays"]["completed"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["steering_polls"]["failed"], 0, "{r}");
    assert!(r["bookmarks"]["ok"].as_u64().unwrap() >= started, "{r}");
    assert!(r["rebuffer_ratio"].as_f64().unwrap() < 0.05, "{r}");
}

#[test]
fn bad_input_is_one_line() {
    for (args, want) in [
        (&["--steering", "ftp://x"][..], "http://"),
        (
            &[
                "--steering",
                "http://127.0.0.1:9",
                "--source-ip",
                "192.0.2.77",
            ],
            "not a local address",
        ),
        (
            &["--steering", "http://127.0.0.1:9", "--source-ip", "::1"],
            "families differ",
        ),
        (
            &["--steering", "http://127.0.0.1:9", "--ramp", "20s"],
            "--ramp",
        ),
        (&["--steering", "http://127.0.0.1:9?x"], "query"),
    ] {
        let mut all = vec![
            "players",
            "--token",
            "t",
            "--title",
            "t1",
            "--duration",
            "2s",
        ];
        all.extend_from_slice(args);
        let out = bench(&all);
        assert_ne!(out.code, Some(0), "{args:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(lines[0].contains(want), "{args:?}: {}", lines[0]);
    }
}
