//! A real player nobody here wrote: hls.js in headless Chromium (Debian's,
//! driven by playwright-core) loads a page served by steering, asks steering to
//! play a title, and plays the HLS manifest from the steered appliance — then
//! keeps playing through that appliance being killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::stack::{self, Stack};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// playwright-core and hls.js from npm (the test command installs them; done
/// here too so the test runs on its own), and Chromium from Debian.
fn ensure_tools() {
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists()
        || !dir.join("node_modules/hls.js").exists()
    {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in tests/browser failed");
    }
    if !Path::new("/usr/bin/chromium").exists() {
        let _ = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
            ])
            .status();
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed"
    );
}

/// The stack with steering serving the web player under /player/.
fn stack_with_player() -> (Stack, tempfile::TempDir) {
    ensure_tools();
    let player = tempfile::tempdir().unwrap();
    std::fs::copy(
        browser_dir().join("player.html"),
        player.path().join("player.html"),
    )
    .unwrap();
    std::fs::copy(
        browser_dir().join("node_modules/hls.js/dist/hls.min.js"),
        player.path().join("hls.min.js"),
    )
    .unwrap();
    let s = stack::start(
        &stack::fleet(),
        &format!("player_dir = \"{}\"", player.path().display()),
    );
    (s, player)
}

/// Start the browser on the player page; progress lines and the final result
/// arrive on the channel as JSON values.
fn browse(
    s: &Stack,
    user: &str,
    title: &str,
    seconds: u32,
    max_buffer: u32,
) -> (std::process::Child, mpsc::Receiver<serde_json::Value>) {
    let url = format!(
        "http://{}/player/player.html?token={}&title={title}&maxbuf={max_buffer}",
        s.addr,
        s.token(user)
    );
    let mut child = Command::new("node")
        .arg(browser_dir().join("play.mjs"))
        .arg(&url)
        .args(["--seconds", &seconds.to_string(), "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

/// The final result (after any number of progress lines).
fn result(rx: &mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    loop {
        let v = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the browser reports");
        if let Some(r) = v.get("result") {
            return r.clone();
        }
    }
}

fn host_of(base_url: &str) -> String {
    base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn hls_js_in_chromium_plays_a_title_from_the_steered_appliance() {
    let (s, _player) = stack_with_player();
    let (mut child, rx) = browse(&s, "alice", "t1", 8, 30);
    let r = result(&rx);
    let _ = child.wait();
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["played"].as_f64().unwrap() >= 8.0, "{r}");
    let primary = &r["play"]["appliances"][0];
    let host = host_of(primary["base_url"].as_str().unwrap());
    // Every fragment came from the steered appliance, and its own metrics agree.
    let frags = r["frags"].as_object().unwrap();
    assert_eq!(frags.keys().collect::<Vec<_>>(), [&host], "{r}");
    let sent = s.sent_bytes(primary["id"].as_str().unwrap()).unwrap();
    assert!(sent > 500_000, "{sent} bytes sent by the steered appliance");
}

#[test]
fn playback_survives_the_serving_appliance_being_killed() {
    let (mut s, _player) = stack_with_player();
    // A 40 s title and a short buffer, so fragments are still being fetched
    // when the appliance dies.
    let (mut child, rx) = browse(&s, "erin", "long", 20, 6);
    // Wait until it plays, then kill whichever appliance serves it.
    let mut killed = None;
    let r = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the browser reports");
        if let Some(r) = v.get("result") {
            break r.clone();
        }
        if killed.is_none()
            && v["played"].as_f64().unwrap_or(0.0) >= 1.0
            && let Some(id) = v["primary"].as_str()
        {
            // The appliance the play answer named first is the one serving.
            s.appliances.get_mut(id).unwrap().0.kill9();
            killed = Some(id.to_owned());
        }
    };
    let _ = child.wait();
    let killed = killed.expect("playback started");
    assert_eq!(r["ok"], true, "playback continued to 20 s: {r}");
    let stalls: Vec<f64> = r["stalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_f64())
        .collect();
    let worst = stalls.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "MEASURED stalls {stalls:?} frags {} after killing {killed}",
        r["frags"]
    );
    assert!(worst < 6.0, "stalled {worst:.1} s after {killed} died: {r}");
    // Fragments came from more than one appliance: the fallback took over.
    assert!(r["frags"].as_object().unwrap().len() >= 2, "{r}");
}
