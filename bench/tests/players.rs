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
    assert!(c.count("DELETE /v1/plays/p0") == 1);
    assert!(
        c.count("GET /v1/steering/p0/hls") >= 2,
        "polled, and again on failure"
    );
}

#[test]
fn a_viewer_with_every_pathway_down_stops() {
    let c = cdn()
        .appliance("a", Serve::Down)
        .appliance("b", Serve::FailSegments)
        .run();
    let r = players(&c.url, 3, &[]);
    assert_eq!(r["plays"]["started"], 1, "the viewer gave up: {r}");
    assert_eq!(r["plays"]["errors"]["all_pathways_failed"], 1, "{r}");
    assert_eq!(r["failovers"], 1, "{r}");
    let why = r["error_samples"]["all_pathways_failed"].as_str().unwrap();
    assert!(why.contains("status 503"), "{why}");
    assert_eq!(r["startups"], 0);
    assert_eq!(r["deletes"]["ok"], 1, "the play is still deleted: {r}");
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
    assert_eq!(r["deletes"]["ok"], r["plays"]["started"], "{r}");
}

#[test]
fn chunked_answers_and_a_short_watch() {
    let c = cdn()
        .appliance("a", Serve::Ok)
        .segments(20, 0.5)
        .chunked()
        .run();
    let r = players(&c.url, 3, &["--watch", "1s", "--bookmark-every", "500ms"]);
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
