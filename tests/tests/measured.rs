//! Steering by measurement over a path that is really slow: in a network
//! namespace of the test's own, tc caps what ISP A's embedded appliance
//! sends to one of its two client networks, while the appliance stays up and
//! healthy. Real players (`oca-bench players`, and hls.js in Chromium)
//! download from it, report their downloads in playback heartbeats, and
//! steering, learning the path is slow, sends that network's new plays to the
//! next best appliance and moves its viewers by content steering; the other
//! network keeps the appliance.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use e2e::netns::{self, Shaper};
use e2e::oca_bench;
use e2e::stack::{self, ApplianceSpec, Stack};

/// The capped network, and one that is not.
const SLOW_NET: &str = "127.1.0.0/16";
const FAST_NET: &str = "127.3.0.0/16";

/// ISP A's appliance serves both networks; an IXP appliance is the next best.
fn fleet() -> [ApplianceSpec; 2] {
    [
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a-ams",
            serves: &[SLOW_NET, FAST_NET],
            ..ApplianceSpec::default()
        },
        stack::ixp(),
    ]
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Accounts of their own for the viewers (one stream each at a time), in
/// us-east where the 40 s title `long` may be watched; tokens.
fn viewers(s: &Stack, names: &[&str]) -> Vec<String> {
    for name in names {
        s.add_user(name, "standard", "US", "us-east");
    }
    names.iter().map(|n| s.token(n)).collect()
}

/// A new play of `long` from `client`: its primary appliance (the play is
/// ended again at once).
fn new_play_primary(s: &Stack, client: &str, token: &str) -> String {
    let r = s.play(ip(client), token, "long", "browser", "main");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let play = r.json();
    let path = format!("/v1/plays/{}", play["play_id"].as_str().unwrap());
    let auth = format!("Bearer {token}");
    let end = e2e::http(s.addr, "DELETE", &path, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(end.status, 204);
    play["appliances"][0]["id"].as_str().unwrap().to_owned()
}

/// What steering measured of `appliance` from `network`, if anything.
fn measured(s: &Stack, appliance: &str, network: &str) -> Option<serde_json::Value> {
    s.appliance(appliance)?["measured"]
        .as_array()?
        .iter()
        .find(|m| m["network"] == network)
        .cloned()
}

/// `oca-bench players` for `secs`, heartbeats every second, one viewer per
/// token from `sources`: the JSON report.
fn players(s: &Stack, tokens: &[String], sources: &str, secs: u32) -> serde_json::Value {
    let steering = format!("http://{}", s.addr);
    let duration = format!("{secs}s");
    let viewers = tokens.len().to_string();
    let mut args = vec![
        "players",
        "--steering",
        &steering,
        "--title",
        "long",
        "--viewers",
        &viewers,
        "--duration",
        &duration,
        "--report-every",
        "1s",
        // Long enough that no segment on the slow path times out: viewers
        // must move by content steering, not by failing over.
        "--timeout",
        "10s",
        "--source-ip",
        sources,
        "--json",
        "--quiet",
    ];
    for t in tokens {
        args.extend(["--token", t.as_str()]);
    }
    let (code, stdout, stderr) = oca_bench(&args, Duration::from_secs(u64::from(secs) + 30));
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

/// What the test states: how soon after the slow path carries viewers
/// steering stops sending that network's new plays to it.
const NEW_PLAYS_MOVE_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn a_path_measured_slow_loses_its_networks_viewers_and_other_networks_keep_it() {
    if !netns::own_network() {
        return;
    }
    let s = stack::start(&fleet(), "");
    let tokens = viewers(&s, &["v1", "v2", "v3", "v4"]);
    let erin = s.token("erin");
    // Before any measurement, both networks' plays start on ISP A's appliance.
    assert_eq!(new_play_primary(&s, "127.1.0.99", &erin), "oca-a1");
    assert_eq!(new_play_primary(&s, "127.3.0.99", &erin), "oca-a1");
    let mut shaper = Shaper::new();
    shaper.cap(s.appliances["oca-a1"].1, SLOW_NET, "4mbit");

    let started = Instant::now();
    std::thread::scope(|scope| {
        let slow =
            scope.spawn(|| players(&s, &tokens[..3], "127.1.0.10,127.1.0.11,127.1.0.12", 30));
        let fast = scope.spawn(|| players(&s, &tokens[3..], "127.3.0.10", 30));
        // New plays from the slow network move to the IXP appliance once
        // its viewers' heartbeats have judged the path.
        let moved = e2e::wait_for("new plays from the slow network off oca-a1", || {
            (new_play_primary(&s, "127.1.0.99", &erin) == "oca-x1").then(|| started.elapsed())
        });
        eprintln!("new plays from {SLOW_NET} moved off the slow path after {moved:?}");
        assert!(moved <= NEW_PLAYS_MOVE_WITHIN, "{moved:?}");
        let slow_path = measured(&s, "oca-a1", SLOW_NET).expect("the slow path is measured");
        assert!(
            slow_path["throughput_mbps"].as_f64().unwrap() < 8.0
                && slow_path["confidence"].as_f64().unwrap() >= 0.5,
            "{slow_path}"
        );
        // Seen in the metrics too, as bounded scalars.
        let metrics = e2e::http(s.addr, "GET", "/metrics", &[], b"").unwrap();
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(
            e2e::metric_in(&text, "steering_slow_paths") >= 1.0,
            "{text}"
        );
        assert!(e2e::metric_in(&text, "steering_path_samples_total") > 0.0);
        // The other network keeps the appliance, which stays eligible.
        for _ in 0..5 {
            assert_eq!(new_play_primary(&s, "127.3.0.99", &erin), "oca-a1");
        }
        let a1 = s.appliance("oca-a1").unwrap();
        assert_eq!(a1["eligible"], true, "{a1}");

        let slow = slow.join().unwrap();
        let fast = fast.join().unwrap();
        eprintln!("slow network's viewers: {slow}\nfast network's viewer: {fast}");
        // The slow network's viewers started on oca-a1 and content steering
        // moved them to oca-x1 mid-play.
        assert_eq!(slow["plays_by_primary"]["oca-a1"], 3, "{slow}");
        assert!(slow["steering_switches"].as_u64().unwrap() >= 3, "{slow}");
        assert_eq!(slow["failovers"], 0, "{slow}");
        assert!(
            slow["bytes_by_pathway"]["oca-x1"].as_u64().unwrap_or(0) > 0,
            "{slow}"
        );
        assert_eq!(slow["heartbeats"]["failed"], 0, "{slow}");
        // The other network's viewer stayed on oca-a1 throughout.
        assert_eq!(fast["steering_switches"], 0, "{fast}");
        assert_eq!(fast["failovers"], 0, "{fast}");
        assert!(
            fast["bytes_by_pathway"]["oca-x1"].as_u64().unwrap_or(0) == 0,
            "{fast}"
        );
        let fast_path = measured(&s, "oca-a1", FAST_NET).expect("the fast path is measured");
        assert!(
            fast_path["throughput_mbps"].as_f64().unwrap() > 20.0,
            "{fast_path}"
        );
    });
}
