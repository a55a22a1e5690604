//! Off-peak fill end to end: steering plans, an IXP oca as the parent, nginx as
//! the origin, an empty embedded oca and its fill-agent, on loopback. The
//! agent's clock is injected (`--clock-start`), never waited for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::stack::{self, Holds, Nginx, Stack};
use e2e::*;

/// Some midnight UTC: 02:00-06:00 is the embedded appliance's window.
const MIDNIGHT: u64 = 1_795_046_400;
const IN_WINDOW: u64 = MIDNIGHT + 3 * 3600;
const OUTSIDE: u64 = MIDNIGHT + 12 * 3600;

/// The fill tests' fleet (an IXP parent holding `ixp_holds` of t1 and an empty
/// embedded appliance), steering with nginx over `packaged` as the origin.
fn stack_with_origin(ixp_holds: Holds, packaged: &Path) -> (Stack, Nginx) {
    stack::start_with_origin(&stack::fill_fleet(ixp_holds), packaged)
}

struct Agent {
    proc: Proc,
    metrics: SocketAddr,
}

/// Start the embedded appliance's fill-agent with `extra` config lines.
fn agent(s: &Stack, clock: u64, extra: &str) -> Agent {
    let proc = s.fill_agent("oca-e1", clock, extra);
    let metrics = proc.addr("metrics=");
    Agent { proc, metrics }
}

fn status(s: &Stack) -> serde_json::Value {
    std::fs::read(s.root("oca-e1").join("fill-status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn metric(a: &Agent, name: &str) -> f64 {
    let r = http(a.metrics, "GET", "/metrics", &[], b"").unwrap();
    metric_in(&String::from_utf8_lossy(&r.body), name)
}

fn wait_state(s: &Stack, state: &str) -> serde_json::Value {
    wait_for(&format!("fill state {state}"), || {
        let st = status(s);
        (st["state"] == state).then_some(st)
    })
}

/// The embedded appliance's fill plan, as steering serves it.
fn plan(s: &Stack) -> serde_json::Value {
    let auth = format!("Bearer oca-e1:{}", stack::credential_of("oca-e1"));
    http(
        s.addr,
        "GET",
        "/v1/appliances/oca-e1/fill-plan",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap()
    .json()
}

/// Every planned object: key → (size, packaged bytes).
fn planned(s: &Stack) -> BTreeMap<String, Vec<u8>> {
    plan(s)["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["objects"].as_array().unwrap().clone())
        .map(|o| {
            let key = o["key"].as_str().unwrap().to_owned();
            let bytes = std::fs::read(s.packaged.join(&key)).unwrap();
            (key, bytes)
        })
        .collect()
}

/// t1's renditions (HLS and DASH), whatever ladder the packager picked.
fn t1_renditions(s: &Stack) -> u64 {
    stack::rendition_count(&s.packaged, "t1")
}

/// t1's cheapest HLS rung's directory.
fn lowest(s: &Stack) -> String {
    stack::ladder(&s.packaged, "t1")[0].dir.clone()
}

/// A rung of t1 above the cheapest (the middle one of three).
fn middle(s: &Stack) -> String {
    let l = stack::ladder(&s.packaged, "t1");
    l[l.len() / 2].dir.clone()
}

fn disk(s: &Stack) -> PathBuf {
    s.root("oca-e1").join("disk0/objects")
}

/// Every file under the embedded appliance's objects matches the package: no
/// partial or corrupt object is ever visible to players.
fn assert_only_good_objects(s: &Stack) -> usize {
    let mut n = 0;
    let mut stack_dirs = vec![disk(s)];
    while let Some(d) = stack_dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack_dirs.push(p);
                continue;
            }
            let key = p.strip_prefix(disk(s)).unwrap();
            if key.starts_with("titles/old") {
                continue;
            }
            let want = std::fs::read(s.packaged.join(key)).unwrap();
            assert!(
                std::fs::read(&p).unwrap() == want,
                "{} differs from the package",
                key.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn fills_from_the_parent_then_the_origin_under_the_rate_cap_and_steers_to_the_filled_box() {
    let (s, _origin) = stack_with_origin(Holds::Hls, &stack::content());
    let objects = planned(&s);
    let total: u64 = objects.values().map(|b| b.len() as u64).sum();
    assert!(
        objects.keys().any(|k| k.contains("/dash/")),
        "DASH too (from the origin)"
    );
    let cap = 32_000_000u64; // 4 MB/s
    let ixp_before = s.sent_bytes("oca-x1").unwrap();
    let a = agent(&s, IN_WINDOW, &format!("rate_bps = {cap}"));

    // Measure the rate between 10% and 90% of the transfer.
    let mut samples: Vec<(Instant, f64)> = Vec::new();
    wait_for("the fill to finish", || {
        samples.push((Instant::now(), metric(&a, "fill_received_bytes")));
        std::thread::sleep(Duration::from_millis(50));
        (status(&s)["state"] == "complete").then_some(())
    });
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(_, b)| *b >= frac * total as f64)
            .copied()
            .unwrap()
    };
    let ((t0, b0), (t1, b1)) = (at(0.1), at(0.9));
    let rate = (b1 - b0) * 8.0 / t1.duration_since(t0).as_secs_f64();
    eprintln!("MEASURED rate {rate:.0} cap {cap} total {total}");
    assert!(
        (rate / cap as f64 - 1.0).abs() < 0.10,
        "rate {rate:.0} bit/s against a cap of {cap}"
    );

    // Every planned object is there, byte for byte; the HLS renditions came
    // from the parent, the DASH ones (which it lacks) from the origin.
    assert_eq!(assert_only_good_objects(&s), objects.len());
    let from_parent = metric(&a, "fill_bytes_total{source=\"oca-x1\",kind=\"parent\"}");
    let from_origin = metric(&a, "fill_bytes_total{source=\"origin\",kind=\"origin\"}");
    let hls_bytes: u64 = objects
        .iter()
        .filter(|(k, _)| !k.contains("/dash/"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(from_parent as u64, hls_bytes);
    assert_eq!(from_origin as u64, total - hls_bytes);
    assert!(s.sent_bytes("oca-x1").unwrap() - ixp_before >= hls_bytes);

    // oca reports it at once; steering sends ISP A's viewers to the filled box.
    wait_for("the filled appliance holds the whole title", || {
        (s.appliance("oca-e1")?["renditions_complete"].as_u64()? >= t1_renditions(&s)).then_some(())
    });
    let alice = s.token("alice");
    let play = s
        .play(
            "127.1.0.9".parse().unwrap(),
            &alice,
            "t1",
            "browser",
            "main",
        )
        .json();
    assert_eq!(play["appliances"][0]["id"], "oca-e1", "{play}");
    assert_eq!(play["appliances"][0]["reason"], "isp-embedded");
    // Progress shows in oca's /health.
    let h = http(s.admin("oca-e1").unwrap(), "GET", "/health", &[], b"")
        .unwrap()
        .json();
    assert_eq!(h["fill"]["state"], "complete", "{h}");
    assert_eq!(h["fill"]["bytes_done"].as_u64(), Some(total));
}

#[test]
fn outside_the_window_only_launches_fill() {
    // A copy of the package with t5, released within the planning horizon.
    let work = tempfile::tempdir().unwrap();
    let packaged = work.path().join("packaged");
    stack::copy_tree(&stack::content(), &packaged);
    stack::copy_title(&packaged, "t1", "t5");
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    std::fs::write(
        packaged.join("titles/t5/title.toml"),
        format!("name = \"Launch\"\nregions = [\"*\"]\nrelease = {soon}\n"),
    )
    .unwrap();
    let (s, _origin) = stack_with_origin(Holds::All, &packaged);
    let p = plan(&s);
    assert_eq!(p["items"][0]["title"], "t5", "the launch comes first");
    assert_eq!(p["items"][0]["urgent"], true);

    let mut a = agent(&s, OUTSIDE, "");
    let st = wait_state(&s, "waiting-window");
    assert_eq!(st["window_open"], false);
    let present = |t: &str| {
        disk(&s)
            .join(format!("titles/{t}/{}/index.m3u8", lowest(&s)))
            .exists()
    };
    assert!(present("t5"), "the launch filled outside the window");
    assert!(!present("t1"), "nothing else did");
    assert_eq!(metric(&a, "fill_window_open"), 0.0);
    a.proc.kill9();

    // The same agent inside its window fills the rest.
    let _a = agent(&s, IN_WINDOW, "");
    wait_state(&s, "complete");
    assert!(present("t1"));
    assert_only_good_objects(&s);
}

#[test]
fn corrupt_bytes_from_a_source_are_caught_and_fetched_elsewhere() {
    let (s, _origin) = stack_with_origin(Holds::All, &stack::content());
    // The parent's copy of one segment rots after it was reported: same size,
    // wrong bytes.
    let victim = format!("titles/t1/{}/seg-00001.m4s", middle(&s));
    let victim = victim.as_str();
    let on_ixp = s.root("oca-x1").join("disk0/objects").join(victim);
    let mut bytes = std::fs::read(&on_ixp).unwrap();
    for b in bytes.iter_mut().skip(1000).take(64) {
        *b ^= 0xff;
    }
    std::fs::write(&on_ixp, &bytes).unwrap();
    let a = agent(&s, IN_WINDOW, "");
    wait_state(&s, "complete");
    assert!(metric(&a, "fill_objects_total{outcome=\"corrupt\"}") >= 1.0);
    assert!(
        metric(&a, "fill_bytes_total{source=\"origin\",kind=\"origin\"}") > 0.0,
        "refetched from the origin"
    );
    assert_only_good_objects(&s);
    // And a player gets the right bytes from the filled appliance.
    wait_for("the filled appliance holds the whole title", || {
        (s.appliance("oca-e1")?["renditions_complete"].as_u64()? >= t1_renditions(&s)).then_some(())
    });
    let good = std::fs::read(s.packaged.join(victim)).unwrap();
    let (_, http_addr) = &s.appliances["oca-e1"];
    let play = s
        .play(
            "127.1.0.9".parse().unwrap(),
            &s.token("alice"),
            "t1",
            "browser",
            "main",
        )
        .json();
    let base = play["appliances"][0]["base_url"].as_str().unwrap();
    assert!(base.contains(&http_addr.to_string()), "{play}");
    let r = get_url(None, &format!("{base}{victim}")).unwrap();
    assert!(r.body == good);
}

#[test]
fn kill_9_mid_transfer_then_restart_resumes_and_refetches_only_the_tail() {
    let (s, _origin) = stack_with_origin(Holds::All, &stack::content());
    let objects = planned(&s);
    let total: u64 = objects.values().map(|b| b.len() as u64).sum();
    let ixp_before = s.sent_bytes("oca-x1").unwrap();
    // A player hammers the filling appliance all along: every object it is
    // given must be the catalogue's bytes (a missing one is a 404, never a
    // partial).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let player = {
        let stop = std::sync::Arc::clone(&stop);
        let http_addr = s.appliances["oca-e1"].1;
        let token = s.sign("/titles/");
        let objects = objects.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (key, want) in &objects {
                    let Some(r) = http(http_addr, "GET", &format!("/t/{token}/{key}"), &[], b"")
                    else {
                        continue;
                    };
                    match r.status {
                        200 => {
                            assert!(r.body == *want, "a player got wrong bytes for {key}");
                            served += 1;
                        }
                        404 => {}
                        other => panic!("{key}: HTTP {other}"),
                    }
                }
            }
            served
        })
    };
    let mut a = agent(&s, IN_WINDOW, "rate_bps = 16000000");
    let before_kill = wait_for("a third of the bytes", || {
        let got = metric(&a, "fill_received_bytes");
        (got > total as f64 / 3.0).then_some(got)
    });
    a.proc.kill9();
    // Nothing partial is visible; something is waiting to be resumed.
    let committed = assert_only_good_objects(&s);
    assert!(committed < objects.len());
    let partials = std::fs::read_dir(s.root("oca-e1").join("disk0/tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert!(
        partials > 0,
        "an interrupted download left its partial file"
    );

    let a2 = agent(&s, IN_WINDOW, "");
    wait_state(&s, "complete");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = player.join().expect("the player saw only good bytes");
    assert!(served > 0, "the player was served during the fill");
    assert_eq!(assert_only_good_objects(&s), objects.len());
    // The restart fetched only what was missing: the two runs together
    // received the plan once (the first run's count was read just before the
    // kill, so it can only be low).
    let after = metric(&a2, "fill_received_bytes");
    let both = before_kill + after;
    eprintln!("MEASURED before_kill {before_kill} after {after} total {total}");
    assert!(
        both <= total as f64 + 64.0 * 1024.0,
        "{both} received for {total}: resumed files were fetched again"
    );
    assert!(s.sent_bytes("oca-x1").unwrap() > ixp_before);
}

#[test]
fn the_quota_makes_room_by_evicting_the_least_valuable_unplanned_content() {
    let (s, _origin) = stack_with_origin(Holds::All, &stack::content());
    let objects = planned(&s);
    let total: u64 = objects.values().map(|b| b.len() as u64).sum();
    // Two renditions the plan does not want: one watched, one never.
    let junk = |r: &str| {
        let d = disk(&s).join(format!("titles/old/{r}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..4 {
            std::fs::write(d.join(format!("seg-{i}.m4s")), vec![7u8; 256 * 1024]).unwrap();
        }
    };
    junk("watched");
    junk("never");
    let (_, http_addr) = &s.appliances["oca-e1"];
    let admin = s.admin("oca-e1").unwrap();
    let token = s.sign("/titles/old/");
    for i in 0..4 {
        let key = format!("titles/old/watched/seg-{i}.m4s");
        let r = http(*http_addr, "GET", &format!("/t/{token}/{key}"), &[], b"").unwrap();
        assert_eq!(r.status, 200);
    }
    let stats = http(admin, "GET", "/store/renditions", &[], b"")
        .unwrap()
        .json();
    let watched = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rendition"] == "titles/old/watched")
        .unwrap();
    assert!(watched["hits"].as_u64().unwrap() >= 4, "{stats}");
    // Room for the plan and one junk rendition, not two.
    let max = total + 1024 * 1024 + 512 * 1024;
    let _a = agent(&s, IN_WINDOW, &format!("max_bytes = {max}"));
    wait_state(&s, "complete");
    assert_only_good_objects(&s);
    let exists = |r: &str| disk(&s).join(format!("titles/old/{r}/seg-0.m4s")).exists();
    assert!(!exists("never"), "the never-watched rendition went first");
    assert!(exists("watched"), "the watched one stayed");
    let used: u64 = {
        let mut n = 0;
        let mut dirs = vec![disk(&s)];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    n += e.metadata().unwrap().len();
                }
            }
        }
        n
    };
    assert!(used <= max, "{used} > quota {max}");
}

#[test]
fn the_headroom_is_never_eaten() {
    let (s, _origin) = stack_with_origin(Holds::All, &stack::content());
    // A headroom just above what is free now: nothing may be written.
    let out = std::process::Command::new("df")
        .args(["--output=size,avail", "-B1"])
        .arg(s.root("oca-e1"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let nums: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let free_percent = nums[1] / nums[0] * 100.0;
    let headroom = (free_percent + 1.0).min(99.0);
    assert!(
        headroom > free_percent,
        "the disk is too empty for this test"
    );
    let _a = agent(&s, IN_WINDOW, &format!("headroom_percent = {headroom:.3}"));
    let st = wait_state(&s, "blocked");
    assert!(st["bytes_left_out"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(assert_only_good_objects(&s), 0);
}

#[test]
fn a_small_disk_takes_whole_items_until_full_and_never_overflows() {
    let mut fleet = stack::fill_fleet(Holds::All);
    let disk_size = 6 * 1024 * 1024;
    fleet[1].disk_bytes = Some(disk_size);
    let (s, _origin) = stack::start_with_origin(&fleet, &stack::content());
    let a = agent(&s, IN_WINDOW, "headroom_percent = 5");
    let st = wait_state(&s, "blocked");
    let left_out = st["bytes_left_out"].as_u64().unwrap();
    assert!(left_out > 0, "{st}");
    let n = assert_only_good_objects(&s);
    assert!(n > 0, "what fits was filled");
    assert_eq!(
        metric(&a, "fill_objects_total{outcome=\"disk\"}"),
        0.0,
        "never ran out mid-write"
    );
    let out = std::process::Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(s.root("oca-e1").join("disk0"))
        .output()
        .unwrap();
    let used: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .next()
        .unwrap();
    assert!(
        used <= disk_size * 95 / 100,
        "{used} bytes used of {disk_size}: the headroom was eaten"
    );
    // Whole items only: every rendition on disk is complete.
    let plan = plan(&s);
    for item in plan["items"].as_array().unwrap() {
        let objects = item["objects"].as_array().unwrap();
        let here = objects
            .iter()
            .filter(|o| disk(&s).join(o["key"].as_str().unwrap()).exists())
            .count();
        assert!(
            here == 0 || here == objects.len(),
            "{} is half there",
            item["rendition"]
        );
    }
}

#[test]
fn an_object_damaged_on_disk_is_found_by_the_scrubber_quarantined_and_fetched_again() {
    let (s, _origin) = stack_with_origin(Holds::All, &stack::content());
    let a = agent(&s, IN_WINDOW, "scrub_rate_bps = 4000000000");
    wait_state(&s, "complete");
    // Bit rot on the filled appliance: same size, wrong bytes.
    let victim = format!("titles/t1/{}/seg-00001.m4s", middle(&s));
    let victim = victim.as_str();
    let path = disk(&s).join(victim);
    let good = std::fs::read(s.packaged.join(victim)).unwrap();
    let mut bad = good.clone();
    for b in bad.iter_mut().skip(500).take(16) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bad).unwrap();
    // The scrubber finds it, quarantines it and tells oca; the next pass
    // fetches it again.
    wait_for("the damage found and repaired", || {
        let st = status(&s);
        (st["scrub_damaged"].as_u64()? >= 1 && std::fs::read(&path).ok()? == good).then_some(())
    });
    assert_eq!(metric(&a, "fill_scrub_damaged_total"), 1.0);
    let quarantined: Vec<_> = std::fs::read_dir(s.root("oca-e1").join("disk0/quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(std::fs::read(quarantined[0].path()).unwrap(), bad);
    assert_only_good_objects(&s);
    // oca serves the repaired bytes.
    let (_, http_addr) = &s.appliances["oca-e1"];
    let url = format!(
        "http://{http_addr}/{victim}?token={}",
        s.sign("/titles/t1/")
    );
    wait_for("oca to serve the repaired object", || {
        (get_url(None, &url)?.body == good).then_some(())
    });
    assert!(status(&s)["scrub_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_disk_that_fills_up_under_the_agent_corrupts_nothing_and_the_fill_resumes_when_space_returns() {
    let mut fleet = stack::fill_fleet(Holds::All);
    fleet[1].disk_bytes = Some(48 * 1024 * 1024);
    let (s, _origin) = stack::start_with_origin(&fleet, &stack::content());
    // Slow enough to be caught mid-fill.
    let a = agent(&s, IN_WINDOW, "rate_bps = 16000000");
    wait_for("the fill under way", || {
        (status(&s)["bytes_done"].as_u64()? > 1_000_000).then_some(())
    });
    // Something else takes every free byte of the disk.
    let junk = s.root("oca-e1").join("disk0/junk");
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if=/dev/zero of='{}' bs=1M 2>/dev/null; true",
            junk.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let stuck = wait_for("the agent to notice the full disk", || {
        let st = status(&s);
        let failed_writes = metric(&a, "fill_objects_total{outcome=\"disk\"}");
        (st["state"] == "blocked" || failed_writes >= 1.0).then_some(st)
    });
    assert_ne!(stuck["state"], "complete");
    assert_only_good_objects(&s);
    // Space comes back: the fill finishes, every object whole and right.
    std::fs::remove_file(&junk).unwrap();
    wait_state(&s, "complete");
    let n = assert_only_good_objects(&s);
    assert_eq!(n, planned(&s).len());
}

/// `kernel.io_uring_disabled` set to 2 (io_uring refused to every process)
/// until dropped, then put back as it was.
struct IoUringDisabled(String);

impl IoUringDisabled {
    const KNOB: &str = "/proc/sys/kernel/io_uring_disabled";

    fn set() -> IoUringDisabled {
        let was = std::fs::read_to_string(Self::KNOB)
            .expect("kernel.io_uring_disabled (Linux 6.6+) to switch io_uring off");
        std::fs::write(Self::KNOB, "2").expect("writing kernel.io_uring_disabled needs root");
        IoUringDisabled(was.trim().to_owned())
    }
}

impl Drop for IoUringDisabled {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::KNOB, &self.0);
    }
}

// Runs alone (.config/nextest.toml): the switch is machine-wide.
#[test]
fn with_io_uring_refused_the_fill_falls_back_to_blocking_calls_and_says_so_once() {
    let _off = IoUringDisabled::set();
    let mut fleet = stack::fill_fleet(Holds::Hls);
    for a in &mut fleet {
        a.oca_settings = "cold_reads = \"io_uring\"";
    }
    let (s, _origin) = stack::start_with_origin(&fleet, &stack::content());
    let objects = planned(&s);
    let a = agent(&s, IN_WINDOW, "disk_io = \"io_uring\"");
    wait_state(&s, "complete");
    assert_eq!(assert_only_good_objects(&s), objects.len());
    let log = a.proc.log();
    assert_eq!(
        log.matches("io_uring unavailable").count(),
        1,
        "said once: {log}"
    );
    // oca's cold reads, asked to use io_uring, fell back too, and said so.
    let oca = s.appliances["oca-e1"].0.log();
    assert_eq!(
        oca.matches("io_uring unavailable; cold reads use blocking threads")
            .count(),
        1,
        "{oca}"
    );
}

/// One bearer token per caller of the embedded appliance's admin listener.
const STEERING_TOKEN: &str = "steering-polls-oca-e1-0123456789abcdef";
const AGENT_TOKEN: &str = "fill-agent-of-oca-e1-0123456789abcdef";
const SCRAPER_TOKEN: &str = "prometheus-scrapes-oca-e1-0123456789abcdef";

fn callers(with_agent: bool) -> String {
    let mut text = format!(
        "# name     may                 token\n\
         steering   health              {STEERING_TOKEN}\n\
         prometheus metrics             {SCRAPER_TOKEN}\n"
    );
    if with_agent {
        text += &format!("fill-agent refresh,renditions  {AGENT_TOKEN}\n");
    }
    text
}

/// A file holding `text`, readable by its owner only.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The embedded appliance's admin listener asks for credentials: steering
/// polls with its own token and the fill-agent refreshes and reads access
/// statistics with its own, each counted by caller; no credential, an
/// unknown one or one outside its scopes is refused with 401/403; and a
/// caller removed from the file is refused within seconds, without a restart.
#[test]
fn steering_and_the_fill_agent_call_the_admin_listener_with_credentials_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let callers_file = secret_file(dir.path(), "admin-callers", &callers(true));
    let steering_token = secret_file(dir.path(), "steering-token", &format!("{STEERING_TOKEN}\n"));
    let agent_token = secret_file(dir.path(), "agent-token", AGENT_TOKEN);
    let mut fleet = stack::fill_fleet(Holds::All);
    fleet[1].oca_extra = Box::leak(
        format!("[admin]\ncallers_file = \"{}\"\n", callers_file.display()).into_boxed_str(),
    );
    let packaged = stack::content();
    let origin = stack::nginx(&packaged);
    let s = stack::start_with(
        &fleet,
        &format!(
            "{}health.admin_token_file = \"{}\"\n",
            stack::origin_config(&origin),
            steering_token.display()
        ),
        &packaged,
    );
    let admin = s.admin("oca-e1").unwrap();
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http(admin, "GET", path, &headers, b"").unwrap()
    };
    let requests = |caller: &str, outcome: &str| -> f64 {
        let r = get("/metrics", Some(SCRAPER_TOKEN));
        let line = format!("oca_admin_requests_total{{caller=\"{caller}\",outcome=\"{outcome}\"}}");
        metric_in(&String::from_utf8_lossy(&r.body), &line)
    };

    // Steering's registration poll came with its credential.
    wait_for("steering's poll, allowed", || {
        (requests("steering", "allowed") >= 1.0).then_some(())
    });
    let a = agent(
        &s,
        IN_WINDOW,
        &format!("oca_admin_token_file = \"{}\"", agent_token.display()),
    );
    wait_state(&s, "complete");
    let objects = assert_only_good_objects(&s);
    assert!(objects > 0);
    // A refresh per object committed, each with the agent's credential.
    assert!(requests("fill-agent", "allowed") >= objects as f64);
    let log = a.proc.log();
    assert!(!log.contains("oca refused"), "{log}");
    for outcome in ["unauthenticated", "forbidden"] {
        for caller in ["steering", "fill-agent"] {
            assert_eq!(requests(caller, outcome), 0.0, "{caller} {outcome}");
        }
    }

    // Refusals, each with its status and reason.
    let unknown = requests("", "unauthenticated");
    let r = get("/health", None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"oca-admin\"")
    );
    assert_eq!(String::from_utf8_lossy(&r.body), "credential required\n");
    let r = get("/metrics", Some("not-a-token-anyone-has-0123456789abcdef"));
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        (401, "unknown credential\n".into())
    );
    let r = get("/metrics", Some(AGENT_TOKEN));
    assert_eq!(r.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "caller fill-agent may not use metrics\n"
    );
    let r = get("/health", Some(STEERING_TOKEN));
    assert_eq!(r.status, 200);
    assert!(r.json()["disks"].is_array(), "the full document");
    assert_eq!(requests("", "unauthenticated"), unknown + 2.0);
    assert_eq!(requests("fill-agent", "forbidden"), 1.0);
    assert!(
        !a.proc.log().contains(AGENT_TOKEN)
            && !s.appliances["oca-e1"].0.log().contains(AGENT_TOKEN)
    );

    // The agent's line removed: its token stops working, nothing restarted.
    std::fs::write(&callers_file, callers(false)).unwrap();
    wait_for("the revocation to take", || {
        (get("/store/renditions", Some(AGENT_TOKEN)).status == 401).then_some(())
    });
    assert_eq!(get("/health", Some(STEERING_TOKEN)).status, 200);
}

/// The fill sockets the agent has open, as `ss` shows them with their TOS:
/// (local address, TOS) for each established connection of process `pid`.
fn fill_sockets(pid: u32) -> Vec<(String, String)> {
    let out = std::process::Command::new("ss")
        .args(["-tnpie", "--tos", "state", "established"])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(|l| {
            let local = l.split_whitespace().nth(2).unwrap_or_default().to_owned();
            let tos = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("tos:"))
                .unwrap_or("0x0")
                .to_owned();
            (local, tos)
        })
        .collect()
}

/// `dscp` and `source_address`: every fill connection (to the IXP parent and
/// the origin) leaves from the configured address with DSCP 8 (CS1: TOS
/// 0x20), so the ISP can police or route fill traffic; the agent's calls to
/// steering are not fill traffic and are left alone.
#[test]
fn fill_connections_carry_the_dscp_mark_and_source_address_the_isp_asked_for() {
    let (s, _origin) = stack_with_origin(Holds::Hls, &stack::content());
    let objects = planned(&s);
    // Slow enough to see the connections while they carry the fill.
    let a = agent(
        &s,
        IN_WINDOW,
        "rate_bps = 16000000\ndscp = 8\nsource_address = \"127.0.0.77\"",
    );
    let pid = a.proc.child.id();
    let marked = wait_for("marked fill connections from 127.0.0.77", || {
        let socks = fill_sockets(pid);
        socks
            .iter()
            .any(|(local, _)| local.starts_with("127.0.0.77:"))
            .then_some(socks)
    });
    for (local, tos) in &marked {
        if local.starts_with("127.0.0.77:") {
            assert_eq!(tos, "0x20", "fill connection from {local}");
        } else {
            // The control plane: not from the fill address, not marked.
            assert_ne!(tos, "0x20", "{local}");
        }
    }
    wait_state(&s, "complete");
    assert_eq!(assert_only_good_objects(&s), objects.len());
}
