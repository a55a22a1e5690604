//! The README's main command: `oca-lab` (what `scripts/lab.sh` runs) starts
//! the whole stack, narrates it, and stops every process it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn the_lab_fills_both_isps_steers_their_viewers_home_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_oca-lab"))
        .args(["--duration", "8s", "--viewers", "1"])
        .env("OCA_LOG", "error")
        .env("STEERING_LOG", "error")
        .env("FILL_AGENT_LOG", "error")
        .output()
        .expect("oca-lab runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // t1's objects: every file of its renditions, whatever ladder oca-pack
    // picked for the lab's content.
    let content = e2e::stack::content();
    let t1 = content.join("titles/t1");
    let dirs = e2e::stack::ladder(&content, "t1")
        .into_iter()
        .map(|r| r.dir)
        .chain(e2e::stack::dash_dirs(&content, "t1"));
    let objects: usize = dirs
        .map(|d| std::fs::read_dir(t1.join(d)).unwrap().count())
        .sum();
    let (a1, b1) = (
        format!("oca-a1: {objects} objects"),
        format!("oca-b1: {objects} objects"),
    );
    for needle in [a1.as_str(), b1.as_str(), "inventory reported", "done in"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    // Each ISP's viewers were served by their own ISP's appliance.
    let line = |isp: &str| {
        text.lines()
            .find(|l| l.contains(&format!("ISP {isp}: ")))
            .unwrap_or_else(|| panic!("no ISP {isp} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("A").contains("served by oca-a1"), "{}", line("A"));
    assert!(line("B").contains("oca-b1"), "{}", line("B"));
    assert!(line("B").contains("because isp-embedded"), "{}", line("B"));
    assert!(
        text.contains("steering sends a client at 127.2.0.9 to oca-b1 (isp-embedded)"),
        "{text}"
    );
    assert!(line("A").contains("rebuffer ratio 0.0"), "{}", line("A"));
    // The title is encrypted: the players took licences, and none failed.
    let licences = line("A");
    let at = licences.find("licences ").expect("a licences figure") + "licences ".len();
    let (ok, total) = licences[at..]
        .split_once(';')
        .unwrap()
        .0
        .split_once('/')
        .unwrap();
    assert!(ok.parse::<u64>().unwrap() >= 1 && ok == total, "{licences}");
    // The share of viewers' bytes from inside their ISP: all of it here, as
    // both ISPs' appliances were filled before the viewers started.
    let inside = text
        .lines()
        .find(|l| l.contains("viewers' bytes from inside their own ISP: "))
        .unwrap_or_else(|| panic!("no inside-ISP line in:\n{text}"));
    assert!(inside.contains(": 100.0% ("), "{inside}");
    // Plays outnumber viewers (the title is short): the narration says why.
    assert!(text.contains("presses play again"), "{text}");
    assert!(line("A").contains("plays by 1 viewer ("), "{}", line("A"));
    for id in ["oca-a1", "oca-b1"] {
        assert_fill_by_source(&text, id);
    }
    assert_all_stopped(&text);
}

/// Megabytes in `… 13.1 MB …` words: every `X MB` of a narration line.
fn megabytes(line: &str) -> Vec<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[1].trim_end_matches([',', ':', ';']) == "MB")
        .filter_map(|w| w[0].parse().ok())
        .collect()
}

/// `id`'s fill, as its fill-agent measured it: a line per kind of source,
/// each `none` or bytes above zero, adding up to what the agent received
/// and to what was filled (a fresh fill resumes nothing). Which sources gave
/// how much is not asserted: the IXP parent usually gives it all, but a
/// parent that refuses a request is skipped for a moment, and the origin
/// fills in (a release-build lab measured 6.9 MB parent, 6.3 MB origin).
fn assert_fill_by_source(text: &str, id: &str) {
    let header = text
        .lines()
        .find(|l| l.contains(&format!("{id}: ")) && l.contains(" objects, "))
        .unwrap_or_else(|| panic!("no fill line for {id} in:\n{text}"));
    let [filled, received] = megabytes(header)[..] else {
        panic!("{header}");
    };
    let mut sum = 0.0;
    for what in ["peers", "the IXP parent", "the origin"] {
        let prefix = format!("{id} from {what}");
        let line = text
            .lines()
            .find(|l| l.contains(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"));
        let mb = megabytes(line);
        assert!(
            line.ends_with(": none") || (!mb.is_empty() && mb.iter().all(|m| *m > 0.0)),
            "{line}"
        );
        sum += mb.iter().sum::<f64>();
    }
    assert!(received > 0.0, "{header}");
    // Each figure is rounded to 0.1 MB.
    assert!(
        (sum - received).abs() <= 0.2,
        "{sum} MB by source: {header}"
    );
    assert!((received - filled).abs() <= 0.1, "{header}");
}

#[test]
fn sigterm_stops_the_lab_and_everything_it_started() {
    let mut lab = Command::new(env!("CARGO_BIN_EXE_oca-lab"))
        .args(["--duration", "120s", "--viewers", "1"])
        .env("OCA_LOG", "error")
        .env("STEERING_LOG", "error")
        .env("FILL_AGENT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("oca-lab runs");
    let (tx, rx) = mpsc::channel();
    let stdout = lab.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut text = String::new();
    // Stop it once viewers are watching: the whole stack is up.
    while !text.contains("viewers: ") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => text.push_str(&(line + "\n")),
            Err(_) => {
                let _ = lab.kill();
                panic!("the lab did not get to its viewers:\n{text}");
            }
        }
    }
    let ok = Command::new("kill")
        .args(["-TERM", &lab.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = e2e::wait_for("the lab to exit", || lab.try_wait().unwrap());
    reader.join().unwrap();
    text.extend(rx.try_iter().map(|l| l + "\n"));
    assert!(status.success(), "{status}:\n{text}");
    assert!(
        text.contains("stopped before the viewers finished"),
        "{text}"
    );
    assert_all_stopped(&text);
}

/// `oca-lab ARGS --json`: its exit status, its JSON report and its narration.
fn lab_report(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oca-lab"))
        .args(args)
        .arg("--json")
        .env("OCA_LOG", "error")
        .env("STEERING_LOG", "error")
        .output()
        .expect("oca-lab runs");
    let narration = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{narration}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), report, narration)
}

/// Both ISPs' viewers played, and every segment they got was the packaged one.
fn assert_viewers_got_right_bytes(report: &serde_json::Value) {
    for isp in ["A", "B"] {
        let p = &report["players"][isp];
        assert!(p["verified_segments"].as_u64() > Some(0), "ISP {isp}: {p}");
        assert_eq!(p["wrong_bytes"], serde_json::json!({}), "ISP {isp}");
        assert_eq!(
            p["plays"]["errors"],
            serde_json::json!({}),
            "ISP {isp}: {p}"
        );
    }
}

#[test]
fn a_short_soak_samples_every_daemon_while_viewers_and_fills_run() {
    let (ok, r, narration) = lab_report(&[
        "--soak",
        "--duration",
        "20s",
        "--sample-every",
        "1s",
        "--viewers",
        "1",
        "--fill-rate-bps",
        "50000000",
    ]);
    assert!(ok, "{r:#}\n{narration}");
    assert_eq!(r["exited"], serde_json::json!([]));
    let series = r["series"].as_array().unwrap();
    let processes: std::collections::BTreeSet<&str> = series
        .iter()
        .filter_map(|s| s["process"].as_str())
        .collect();
    let want = [
        "steering",
        "oca-x1",
        "oca-a1",
        "oca-b1",
        "oca-c1",
        "fill-agent oca-a1",
        "fill-agent oca-b1",
        "fill-agent oca-c1",
    ];
    assert_eq!(processes, want.into_iter().collect(), "{r:#}");
    // Memory, descriptors, threads and (from each daemon's metrics) tasks.
    assert_eq!(series.len(), want.len() * 4, "{r:#}");
    assert!(r["samples"].as_u64() >= Some(10), "{r:#}");
    assert_eq!(r["polls"]["failed"], 0);
    assert!(r["churn"]["cycles"].as_u64() >= Some(1), "{r:#}");
    assert_eq!(r["churn"]["wrong"], serde_json::json!([]));
    assert_viewers_got_right_bytes(&r);
    assert_all_stopped(&narration);
}

#[test]
fn a_short_chaos_run_keeps_bytes_objects_bookmarks_and_the_fleet() {
    let (ok, r, narration) = lab_report(&[
        "--chaos",
        "--duration",
        "25s",
        "--pause",
        "500ms..1500ms",
        "--down",
        "0s..1s",
        "--viewers",
        "1",
        "--fill-rate-bps",
        "50000000",
    ]);
    // Every invariant is checked by the lab; a violation fails it.
    assert!(ok, "{r:#}\n{narration}");
    let kills: u64 = r["kills"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|k| k["count"].as_u64())
        .sum();
    assert!(kills >= 8, "{r:#}");
    assert_eq!(r["lost"], serde_json::json!([]));
    assert_eq!(r["slow_convergence"], serde_json::json!([]));
    assert_eq!(r["bookmark_kept"], true);
    assert!(r["churn"]["cycles"].as_u64() >= Some(1), "{r:#}");
    assert_viewers_got_right_bytes(&r);
    assert_all_stopped(&narration);
}

/// Two regions on PostgreSQL: eu-west's steering dies, then the database
/// primary; new plays succeed again within a few seconds each time, and the
/// viewers (given both instances) lose no play.
#[test]
fn two_regions_survive_a_region_and_a_database_primary_dying() {
    let (ok, r, narration) = lab_report(&[
        "--regions",
        "2",
        "--duration",
        "15s",
        "--viewers",
        "1",
        "--fill-rate-bps",
        "50000000",
    ]);
    assert!(ok, "{r:#}\n{narration}");
    for drill in [
        "region_kill_to_first_play_ms",
        "database_kill_to_first_play_ms",
    ] {
        let ms = r[drill].as_f64().unwrap();
        assert!(ms < 5000.0, "{drill} {ms} ms: {r:#}");
    }
    let viewers = r["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 2, "{r:#}");
    let moved: u64 = viewers
        .iter()
        .map(|v| v[1]["steering_failovers"].as_u64().unwrap())
        .sum();
    assert!(moved >= 1, "the viewers moved to us-east: {r:#}");
    for v in viewers {
        assert_eq!(v[1]["plays"]["failed"], 0, "{r:#}");
        assert_eq!(v[1]["plays"]["errors"], serde_json::json!({}), "{r:#}");
    }
    assert!(narration.contains("drill 1") && narration.contains("drill 2"));
    assert_all_stopped(&narration);
}

/// Nothing answers on the addresses the lab printed: everything it started is gone.
fn assert_all_stopped(text: &str) {
    let addrs: Vec<std::net::SocketAddr> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .filter_map(|w| w.split('/').next()?.trim_end_matches(',').parse().ok())
        .collect();
    assert!(addrs.len() >= 5, "{text}");
    for a in addrs {
        assert!(
            std::net::TcpStream::connect(a).is_err(),
            "{a} still answers"
        );
    }
}
