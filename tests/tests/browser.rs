//! Real players nobody here wrote: hls.js and dash.js in headless Chromium
//! (Debian's, driven by playwright-core) load a page served by steering, ask
//! steering to play a title, and play its manifest from the steered appliance —
//! then keep playing through that appliance being killed (hls.js), or follow
//! content steering off it when it saturates (dash.js).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use e2e::get_url;
use e2e::stack::{self, ApplianceSpec, Stack};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// playwright-core, hls.js and dash.js from npm (the test command installs
/// them; done here too so the test runs on its own), and Chromium from Debian.
fn ensure_tools() {
    let dir = browser_dir();
    if ["playwright-core", "hls.js", "dashjs"]
        .iter()
        .any(|m| !dir.join("node_modules").join(m).exists())
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

/// `fleet` with steering serving the web player (and both players' scripts)
/// under /player/.
fn stack_with_player(fleet: &[ApplianceSpec]) -> (Stack, tempfile::TempDir) {
    stack_with_player_and(fleet, "")
}

/// `stack_with_player` with more steering config (`extra` as for `stack::start`).
fn stack_with_player_and(fleet: &[ApplianceSpec], extra: &str) -> (Stack, tempfile::TempDir) {
    ensure_tools();
    let player = player_dir();
    let s = stack::start(
        fleet,
        &format!("player_dir = \"{}\"\n{extra}", player.path().display()),
    );
    (s, player)
}

/// The web player and both players' scripts, in a directory for steering's
/// `player_dir`.
fn player_dir() -> tempfile::TempDir {
    let player = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("player.html", "player.html"),
        ("node_modules/hls.js/dist/hls.min.js", "hls.min.js"),
        (
            "node_modules/dashjs/dist/modern/umd/dash.all.min.js",
            "dash.all.min.js",
        ),
    ] {
        std::fs::copy(browser_dir().join(from), player.path().join(to)).unwrap();
    }
    player
}

/// `stack_with_player` over the e2e content plus `enc`, an encrypted title
/// (its key imported under a key-encryption key), with an nginx origin
/// serving `enc` (no appliance holds it).
fn stack_with_encrypted_title() -> (Stack, tempfile::TempDir, stack::Nginx, tempfile::TempDir) {
    ensure_tools();
    let work = tempfile::tempdir().unwrap();
    let packaged = work.path().join("packaged");
    stack::copy_tree(&stack::content(), &packaged);
    stack::make_content_with(&packaged, "enc", "12", &["--encrypt"]);
    let kek = work.path().join("kek");
    std::fs::write(&kek, format!("{}\n", "3c".repeat(32))).unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let player = player_dir();
    let origin = stack::nginx(&packaged);
    let extra = format!(
        "player_dir = \"{}\"\n{}[drm]\nkey_file = \"{}\"\n",
        player.path().display(),
        stack::origin_config(&origin),
        kek.display()
    );
    let s = stack::start_with(&stack::fleet(), &extra, &packaged);
    (s, player, origin, work)
}

/// Start the browser on the player page with `player` (hls or dash) and more
/// of the page's query in `more` (`&hb=1`, or nothing); progress
/// lines and the final result arrive on the channel as JSON values.
fn browse(
    s: &Stack,
    user: &str,
    title: &str,
    player: &str,
    seconds: u32,
    max_buffer: u32,
    more: &str,
) -> (std::process::Child, mpsc::Receiver<serde_json::Value>) {
    let url = format!(
        "http://{}/player/player.html?token={}&title={title}&player={player}&maxbuf={max_buffer}{more}",
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

/// The final result, handing each progress line before it to `progress`.
fn result(
    rx: &mpsc::Receiver<serde_json::Value>,
    mut progress: impl FnMut(&serde_json::Value),
) -> serde_json::Value {
    loop {
        let v = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the browser reports");
        if let Some(r) = v.get("result") {
            return r.clone();
        }
        progress(&v);
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
    let (s, _player) = stack_with_player(&stack::fleet());
    // The title is oca-pack's output (scripts/make-content.sh), imported by
    // steering as packaged: its sidecar is there and the play offers its rungs.
    let ladder = stack::ladder(&s.packaged, "t1");
    assert!(s.packaged.join("titles/t1/ladder.json").exists());
    let (mut child, rx) = browse(&s, "alice", "t1", "hls", 8, 30, "");
    let r = result(&rx, |_| {});
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
    let offered = r["play"]["native"].as_array().map_or(0, Vec::len);
    assert!(
        offered >= ladder.len(),
        "{offered} renditions offered for a {}-rung ladder: {r}",
        ladder.len()
    );
}

#[test]
fn playback_survives_the_serving_appliance_being_killed() {
    let (mut s, _player) = stack_with_player(&stack::fleet());
    // A 40 s title and a short buffer, so fragments are still being fetched
    // when the appliance dies.
    let (mut child, rx) = browse(&s, "erin", "long", "hls", 20, 6, "");
    // Wait until it plays, then kill whichever appliance serves it.
    let mut killed = None;
    let r = result(&rx, |v| {
        if killed.is_none()
            && v["played"].as_f64().unwrap_or(0.0) >= 1.0
            && let Some(id) = v["primary"].as_str()
        {
            // The appliance the play answer named first is the one serving.
            s.appliances.get_mut(id).unwrap().0.kill9();
            killed = Some(id.to_owned());
        }
    });
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

/// Fetches `url` over and over from another thread, about 8 MB/s, until
/// dropped: enough egress to saturate an appliance of 40 Mbit/s while it keeps
/// serving. Counts the fetches that were not answered 200.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let (st, f) = (stop.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            // Bounded like every test: the play takes well under two minutes.
            let until = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::SeqCst) && Instant::now() < until {
                if get_url(None, &url).is_none_or(|r| r.status != 200) {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                // Pacing, not synchronisation: ~1.25 MB a fetch, ~8 a second.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Load {
            stop,
            failed,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn dash_js_in_chromium_is_steered_off_an_appliance_that_saturates_mid_play() {
    // 40 Mbit/s appliances: the player alone keeps one well under
    // `max_utilisation` (0.85), the test's extra load takes it over.
    let mut fleet = stack::fleet();
    for a in &mut fleet {
        a.capacity_mbps = 40;
    }
    let (s, _player) = stack_with_player(&fleet);
    // A 40 s title of 4 s segments and a short buffer: dash.js fetches a
    // segment every few seconds for the whole play.
    let (mut child, rx) = browse(&s, "erin", "long", "dash", 24, 6, "");
    let mut load = None;
    let (mut steered_after, mut moved_after) = (None, None);
    let r = result(&rx, |v| {
        let loaded = v["loaded"].as_u64().unwrap_or(0);
        if load.is_none()
            && v["played"].as_f64().unwrap_or(0.0) >= 1.0
            && let Some(id) = v["primary"].as_str()
        {
            // Playing from the first pathway (dash.js starts on the MPD's
            // defaultServiceLocation): saturate that appliance from here on.
            // The dearest video Representation: the ladder's top rung.
            let addr = s.appliances[id].1;
            let top = stack::dash_dirs(&s.packaged, "long")
                [stack::ladder(&s.packaged, "long").len() - 1]
                .clone();
            let seg = format!(
                "http://{addr}/t/{}/titles/long/{top}/chunk-00001.m4s",
                s.sign("/titles/long/")
            );
            eprintln!("saturating {id} after {loaded} fragments");
            load = Some((Load::start(seg), Instant::now(), loaded, id.to_owned()));
        }
        if let Some((_, at, _, id)) = &load {
            if steered_after.is_none() && v["steering"][0].as_str().is_some_and(|p| p != id) {
                steered_after = Some(at.elapsed());
            }
            if moved_after.is_none() && v["frags"].as_object().is_some_and(|f| f.len() > 1) {
                moved_after = Some(at.elapsed());
            }
        }
    });
    let _ = child.wait();
    let (load, _, before, saturated) = load.expect("playback started");
    let load_failures = load.failed.load(Ordering::SeqCst);
    drop(load);
    eprintln!(
        "MEASURED after the load on {saturated} began: steering answer changed {steered_after:?}, first fragment elsewhere {moved_after:?}; stalls {}",
        r["stalls"]
    );
    // What the player saw, short of the play answer.
    let seen = serde_json::json!({
        "played": r["played"], "errors": r["errors"], "stalls": r["stalls"],
        "fragHosts": r["fragHosts"], "steering": r["steering"],
        "appliances": r["play"]["appliances"],
    });
    assert_eq!(r["ok"], true, "played 24 s: {seen}");
    assert_eq!(r["errors"], serde_json::json!([]), "{seen}");
    let stalled = r["stalls"].as_array().unwrap().iter();
    let worst = stalled.filter_map(|x| x.as_f64()).fold(0.0, f64::max);
    assert!(worst < 6.0, "stalled {worst:.1} s: {seen}");
    // The saturated appliance kept serving: leaving it was steering's doing.
    assert_eq!(load_failures, 0, "the saturated appliance failed requests");
    // Each fragment's appliance, from the host of its request URL.
    let pathways: Vec<(String, String)> = r["play"]["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let host = host_of(a["base_url"].as_str().unwrap());
            (host, a["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let from: Vec<&str> = r["fragHosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let h = h.as_str().unwrap();
            let p = pathways.iter().find(|(host, _)| host == h);
            p.map_or("elsewhere", |(_, id)| id.as_str())
        })
        .collect();
    let before = usize::try_from(before).unwrap();
    assert!(
        from[..before].iter().all(|id| *id == saturated),
        "before the load every fragment came from {saturated}: {from:?}"
    );
    // After the load began: the saturated appliance for a few seconds at most
    // (the next steering poll), then the play's other pathways for every
    // remaining fragment. Steering ranks those two alike, so dash.js may take
    // either one at each poll.
    let switch = from[before..]
        .iter()
        .position(|id| *id != saturated)
        .map(|i| before + i)
        .unwrap_or_else(|| panic!("dash.js stayed on {saturated}: {seen}"));
    let after = &from[switch..];
    assert!(
        after
            .iter()
            .all(|id| *id != saturated && *id != "elsewhere"),
        "after leaving {saturated}, fragments came from the other pathways: {from:?}"
    );
    assert!(after.len() >= 4, "fragments after the switch: {from:?}");
    // Egress is sampled each second, the answer lives 1 s, segments are 4 s.
    assert!(
        moved_after.is_some_and(|d| d < Duration::from_secs(15)),
        "left {saturated} {moved_after:?} after it saturated"
    );
    // The appliances it moved to sent them, by their own metrics (nothing
    // else fetched from them).
    let mut moved_to: Vec<&str> = after.to_vec();
    moved_to.sort_unstable();
    moved_to.dedup();
    let sent: u64 = moved_to.iter().map(|id| s.sent_bytes(id).unwrap()).sum();
    assert!(sent > 1_000_000, "{sent} bytes sent by {moved_to:?}");
    // The last steering answer dash.js took put the saturated appliance last.
    let steering: Vec<&str> = r["steering"]
        .as_array()
        .unwrap_or_else(|| panic!("dash.js polled content steering: {seen}"))
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(steering.len(), pathways.len(), "{seen}");
    assert_eq!(steering.last(), Some(&saturated.as_str()), "{seen}");
    eprintln!("MEASURED fragments by appliance {from:?}");
}

#[test]
fn dash_js_and_hls_js_play_an_encrypted_title_with_a_clear_key_licence_from_steering() {
    let (s, _player, _origin, _work) = stack_with_encrypted_title();
    let licences = || {
        let m = e2e::http(s.addr, "GET", "/metrics", &[], b"").unwrap();
        String::from_utf8_lossy(&m.body)
            .lines()
            .find(|l| l.starts_with("steering_licences_total{reason=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for player in ["dash", "hls"] {
        let before = licences();
        let (mut child, rx) = browse(&s, "alice", "enc", player, 6, 30, "");
        let r = result(&rx, |_| {});
        let _ = child.wait();
        assert_eq!(r["ok"], true, "{player}: {r}");
        assert!(r["played"].as_f64().unwrap() >= 6.0, "{player}: {r}");
        // It played because steering licensed it.
        assert!(
            licences() > before,
            "{player} played without a licence: {r}"
        );
    }
}

/// A refused play is retried as steering asks: the page's first play from
/// this address is refused (its per-address burst was used up just before,
/// by the test), and after the `Retry-After` and a little jitter the page
/// asks again, is admitted, and plays with hls.js.
#[test]
fn a_play_refused_by_admission_is_retried_after_retry_after_and_plays() {
    ensure_tools();
    let player = player_dir();
    let s = stack::start(
        &stack::fleet(),
        &format!(
            // One play per 30 s from an address: still refused when Chromium,
            // however slow to start, asks.
            "player_dir = \"{}\"\n[admission]\nclient_plays_per_min = 2\nclient_burst = 1\n",
            player.path().display()
        ),
    );
    // Chromium reaches steering from 127.0.0.1: use that address's burst.
    let r = stack::play_at(
        s.addr,
        "127.0.0.1".parse().unwrap(),
        "vt_forged",
        "t1",
        "browser",
        "main",
    );
    assert_eq!(r.status, 401);
    let (mut child, rx) = browse(&s, "alice", "t1", "hls", 4, 30, "");
    let r = result(&rx, |_| {});
    let _ = child.wait();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["refusals"],
        serde_json::json!(["client_rate_limited"]),
        "{r}"
    );
}

/// hls.js's own heartbeats judge a path: Chromium sits in ISP A's network
/// (a network namespace of the test's own, where loopback connections come
/// from 127.1.0.50), tc caps what ISP A's appliance sends to that network,
/// and the page reports each fragment's download from hls.js's load
/// statistics. Steering learns the path is slow and content steering moves
/// the player to the IXP appliance mid-play, while ISP A's appliance stays
/// healthy. One player alone may judge here (`min_path_confidence` 0.2: about
/// one play's most weight), where the oca-bench test needs several plays.
#[test]
fn hls_js_heartbeats_move_it_off_a_path_that_is_slow_for_its_network() {
    if !e2e::netns::own_network() {
        return;
    }
    e2e::netns::default_source("127.1.0.50".parse().unwrap());
    let fleet = [
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a-ams",
            serves: &["127.1.0.0/16"],
            ..ApplianceSpec::default()
        },
        stack::ixp(),
    ];
    // One play's weight decays from 2 of 8 as soon as it is given: 0.2.
    let (s, _player) = stack_with_player_and(&fleet, "steer.min_path_confidence = 0.2");
    let mut shaper = e2e::netns::Shaper::new();
    shaper.cap(s.appliances["oca-a1"].1, "127.1.0.0/16", "3mbit");
    let (mut child, rx) = browse(&s, "erin", "long", "hls", 24, 8, "&hb=1");
    let r = result(&rx, |_| {});
    let _ = child.wait();
    eprintln!(
        "MEASURED frags {} steering {} oca-a1 {}",
        r["frags"],
        r["steering"],
        s.appliance("oca-a1").unwrap()["measured"]
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["play"]["appliances"][0]["id"], "oca-a1", "{r}");
    let host = |id: &str| {
        let list = r["play"]["appliances"].as_array().unwrap();
        let a = list.iter().find(|a| a["id"] == id).unwrap();
        host_of(a["base_url"].as_str().unwrap())
    };
    let hosts: Vec<&str> = r["fragHosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    // Started on the slow path, ended on the IXP appliance.
    assert_eq!(hosts.first().copied(), Some(host("oca-a1").as_str()), "{r}");
    assert_eq!(hosts.last().copied(), Some(host("oca-x1").as_str()), "{r}");
    assert_eq!(r["steering"][0], "oca-x1", "{r}");
    assert!(r["heartbeats"]["ok"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["heartbeats"]["failed"], 0, "{r}");
    let a1 = s.appliance("oca-a1").unwrap();
    assert_eq!(a1["eligible"], true, "{a1}");
    let path = &a1["measured"][0];
    assert_eq!(path["network"], "127.1.0.0/16", "{a1}");
    assert!(path["throughput_mbps"].as_f64().unwrap() < 8.0, "{a1}");
}
