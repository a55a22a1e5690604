//! Chaos: while a player fetches every object from both appliances and a fill
//! runs, kill -9 a random process of the stack (an appliance, the fill agent,
//! steering) at random intervals and start it again. Throughout: every byte a
//! player receives matches the catalogue. After: the fill completes with only
//! whole, right objects; steering has the full fleet up again; a bookmark
//! committed before the chaos is still there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::stack;
use e2e::*;

/// 03:00 UTC: inside the default 02:00-06:00 fill window.
const IN_WINDOW: u64 = 1_795_046_400 + 3 * 3600;
const CHAOS: Duration = Duration::from_secs(15);

/// Every file under `dir`, as keys relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    out
}

#[test]
fn kill_9_of_any_process_at_random_never_serves_wrong_bytes_or_loses_anything() {
    let (mut s, _origin) =
        stack::start_with_origin(&stack::fill_fleet(stack::Holds::All), &stack::content());

    // A committed record: a bookmark, before anything is killed.
    let alice = s.token("alice");
    let auth = format!("Bearer {alice}");
    let client: std::net::IpAddr = "127.1.0.9".parse().unwrap();
    let play = s.play(client, &alice, "t1", "browser", "main").json();
    let body = serde_json::json!({"play_id": play["play_id"], "position": 33.0});
    // Committed means answered 200; a loaded machine can time the bookmark
    // store out (503, the play goes on without it), so commit until it is.
    wait_for("the bookmark committed", || {
        let r = http(
            s.addr,
            "POST",
            "/v1/bookmarks",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )?;
        (r.status == 200).then_some(())
    });
    let path = format!("/v1/plays/{}", play["play_id"].as_str().unwrap());
    http(s.addr, "DELETE", &path, &[("Authorization", &auth)], b"").unwrap();

    // The player: every object of the IXP's copy, from both appliances, round
    // and round, comparing every 200 with the catalogue.
    let objects_dir: PathBuf = s.root("oca-x1").join("disk0/objects");
    let catalogue: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
        files(&objects_dir)
            .into_iter()
            .map(|k| {
                let bytes = std::fs::read(s.packaged.join(&k)).unwrap();
                (k, bytes)
            })
            .collect(),
    );
    let token = s.sign("/titles/");
    let addrs: Arc<Mutex<BTreeMap<&'static str, SocketAddr>>> = Arc::new(Mutex::new(
        s.appliances.iter().map(|(k, (_, a))| (*k, *a)).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (good, other, wrong) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::<String>::new())),
    );
    let player = {
        let (addrs, stop, catalogue) = (addrs.clone(), stop.clone(), catalogue.clone());
        let (good, other, wrong) = (good.clone(), other.clone(), wrong.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                for (key, want) in catalogue.iter() {
                    let now: Vec<(&str, SocketAddr)> = addrs
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(k, a)| (*k, *a))
                        .collect();
                    for (id, a) in now {
                        match http(a, "GET", &format!("/t/{token}/{key}"), &[], b"") {
                            Some(r) if r.status == 200 && r.body == *want => {
                                good.fetch_add(1, Relaxed);
                            }
                            Some(r) if r.status == 200 => {
                                wrong
                                    .lock()
                                    .unwrap()
                                    .push(format!("{id} {key}: {} bytes", r.body.len()));
                            }
                            _ => {
                                other.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    if stop.load(Relaxed) {
                        return;
                    }
                }
            }
        })
    };

    // The fill of the embedded appliance, slowed so the chaos hits it mid-way.
    let fill_extra = "rate_bps = 24000000";
    let mut agent = s.fill_agent("oca-e1", IN_WINDOW, fill_extra);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    while started.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        let victim = ["oca-e1", "oca-x1", "fill-agent", "steering"][rng.below(4) as usize];
        *kills.entry(victim).or_default() += 1;
        match victim {
            "fill-agent" => {
                agent.kill9();
                agent = s.fill_agent("oca-e1", IN_WINDOW, fill_extra);
            }
            "steering" => s.restart_steering(),
            id => {
                let a = s.restart_appliance(id);
                addrs.lock().unwrap().insert(id, a);
            }
        }
    }
    println!("kills: {kills:?}");
    let calm = Instant::now();

    // Steering has the whole fleet up again.
    wait_for("every appliance up at steering", || {
        let list = http(s.addr, "GET", "/v1/appliances", &[], b"")?.json();
        let all = list.as_array()?;
        (all.len() == 2 && all.iter().all(|a| a["up"] == true)).then_some(())
    });
    println!("fleet up again {:?} after the last restart", calm.elapsed());
    // The fill completes, with only whole, right objects.
    wait_for("the fill to complete", || {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.root("oca-e1").join("fill-status.json")).ok()?)
                .ok()?;
        (st["state"] == "complete").then_some(())
    });
    let filled = s.root("oca-e1").join("disk0/objects");
    let keys = files(&filled);
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            std::fs::read(filled.join(k)).unwrap() == std::fs::read(s.packaged.join(k)).unwrap(),
            "{k} on oca-e1 differs from the catalogue"
        );
    }
    // Let the player go round once more on the settled stack, then stop it.
    let before = good.load(Relaxed);
    wait_for("the player served again", || {
        (good.load(Relaxed) > before + catalogue.len() as u64).then_some(())
    });
    stop.store(true, Relaxed);
    player.join().unwrap();
    let wrong = wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "wrong bytes served: {wrong:?}");
    println!(
        "player: {} right responses, {} refused or failed while processes were down, 0 wrong",
        good.load(Relaxed),
        other.load(Relaxed)
    );
    // The bookmark survived every steering restart.
    let again = s.play(client, &alice, "t1", "browser", "main").json();
    assert_eq!(again["resume_position"], 33.0, "{again}");
}
