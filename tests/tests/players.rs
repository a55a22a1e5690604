//! Simulated viewers (`oca-bench players`) against the whole stack: steering
//! with accounts, and real oca appliances in two ISPs. The viewers are
//! clients of ISP A (bound to 127.1.0.9), so steering must send them, and
//! their bytes, to ISP A's appliances.

use std::time::Duration;

use e2e::oca_bench;
use e2e::stack;

#[test]
fn viewers_in_isp_a_play_from_isp_a_without_rebuffering() {
    let s = stack::start(&stack::fleet(), "");
    let alice = s.token("alice");
    let steering = format!("http://{}", s.addr);
    let (code, stdout, stderr) = oca_bench(
        &[
            "players",
            "--steering",
            &steering,
            "--token",
            &alice,
            "--title",
            "t1",
            "--device",
            "browser",
            "--profile",
            "main",
            "--viewers",
            "2",
            "--duration",
            "15s",
            "--source-ip",
            "127.1.0.9",
            "--json",
            "--quiet",
        ],
        Duration::from_secs(40),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
    // Shown with --nocapture: the figures of this run.
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    let plays = &r["plays"];
    // Two viewers, a 12 s title, 15 s: each plays it through and starts again.
    assert!(plays["started"].as_u64().unwrap() >= 2, "{r}");
    // Every play was deleted, so alice's two streams were always free. (A
    // transient refusal such as 503 no_capacity, when a busy machine makes
    // health checks miss, is retried a second later and not this test's
    // concern.)
    assert!(
        plays["failed_by"].get("403 stream_limit").is_none(),
        "alice may stream twice: {r}"
    );
    assert!(plays["completed"].as_u64().unwrap() >= 2, "{r}");
    assert!(plays["errors"].as_object().unwrap().is_empty(), "{r}");
    assert!(r["startups"].as_u64().unwrap() >= 2, "{r}");
    let p99 = r["startup_us"]["p99"].as_u64().unwrap();
    assert!(p99 > 0 && p99 < 5_000_000, "startup p99 {p99} µs: {r}");
    assert!(r["rebuffer_ratio"].as_f64().unwrap() < 0.05, "{r}");
    assert!(r["played_s"].as_f64().unwrap() > 20.0, "{r}");
    assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(r["segments"].as_u64().unwrap() >= 6, "{r}");
    assert_eq!(r["failovers"], 0, "{r}");
    // Every byte came from ISP A's embedded appliances.
    let by_pathway = r["bytes_by_pathway"].as_object().unwrap();
    assert!(!by_pathway.is_empty(), "{r}");
    for (id, bytes) in by_pathway {
        assert!(id == "oca-a1" || id == "oca-a2", "{id}: {bytes} bytes: {r}");
    }
    let total: u64 = by_pathway.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, r["bytes"].as_u64().unwrap());
    for id in r["plays_by_primary"].as_object().unwrap().keys() {
        assert!(id == "oca-a1" || id == "oca-a2", "primary {id}: {r}");
    }
    assert_eq!(
        r["plays_by_source"]["127.1.0.9"], plays["started"],
        "every play from the bound address: {r}"
    );
    // The ABR climbed above the lowest rung on loopback.
    let lowest = stack::ladder(&s.packaged, "t1")[0].bandwidth as f64;
    assert!(r["avg_bitrate_bps"].as_f64().unwrap() > lowest, "{r}");
    // Every play was ended by its last heartbeat (or alice's second stream
    // would be refused), with no bookmark or DELETE needed.
    assert_eq!(r["heartbeats"]["failed"], 0, "{r}");
    assert!(
        r["heartbeats"]["ok"].as_u64().unwrap() > plays["started"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(r["deletes"]["ok"], 0, "{r}");
    assert_eq!(r["bookmarks"]["ok"], 0, "{r}");
    // The title is encrypted: each play took a Clear Key licence first.
    assert_eq!(r["licences"]["failed"], 0, "{r}");
    assert!(
        r["licences"]["ok"].as_u64().unwrap()
            >= plays["started"].as_u64().unwrap() - plays["failed"].as_u64().unwrap_or(0),
        "{r}"
    );
    assert!(r["steering_polls"]["ok"].as_u64().unwrap() >= 2, "{r}");
    // Steering learnt from the heartbeats' samples how fast the appliances
    // serve ISP A's network: loopback, far above any bitrate.
    let measured: Vec<serde_json::Value> = ["oca-a1", "oca-a2"]
        .iter()
        .filter_map(|id| s.appliance(id))
        .flat_map(|a| a["measured"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!measured.is_empty(), "{r}");
    for m in &measured {
        assert_eq!(m["network"], "127.1.0.0/16", "{m}");
        assert!(m["throughput_mbps"].as_f64().unwrap() > 20.0, "{m}");
    }
    assert_eq!(r["viewers_lost"], 0);
}
