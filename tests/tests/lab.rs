//! The README's main command: `oca-bench lab` runs the whole stack, narrates
//! it, and stops every process it started.

use std::process::Command;

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
    assert!(line("A").contains("rebuffer ratio 0.0"), "{}", line("A"));
    // Everything it started is gone: nothing answers on the addresses it printed.
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
