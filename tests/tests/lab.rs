//! The README's main command: `oca-bench lab` runs the whole stack, narrates
//! it, and stops every process it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::binary;

#[test]
fn the_lab_fills_both_isps_steers_their_viewers_home_and_cleans_up() {
    let out = Command::new(binary("oca-bench"))
        .args(["lab", "--duration", "8s", "--viewers", "1"])
        .env("OCA_LOG", "error")
        .env("STEERING_LOG", "error")
        .env("FILL_AGENT_LOG", "error")
        .output()
        .expect("oca-bench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "oca-a1: 32 objects",
        "oca-b1: 32 objects",
        "inventory reported",
        "done in",
    ] {
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
    assert_all_stopped(&text);
}

#[test]
fn sigterm_stops_the_lab_and_everything_it_started() {
    let mut lab = Command::new(binary("oca-bench"))
        .args(["lab", "--duration", "120s", "--viewers", "1"])
        .env("OCA_LOG", "error")
        .env("STEERING_LOG", "error")
        .env("FILL_AGENT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("oca-bench runs");
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
