//! `oca-lab --chaos`: the lab while a random process of it is killed
//! with SIGKILL at random intervals and started again, as a service manager
//! would (same config, same addresses).
//!
//! Victims: steering, the IXP and the embedded appliances, and the fill
//! agents, one of which (`oca-c1`'s) is always mid-fill (see the soak's
//! churn). Checked throughout and at the end:
//! - every segment a viewer receives matches the packaged file (players
//!   `--verify`), and every object a fill writes matches it too;
//! - no committed object is lost: what each appliance held before a kill is
//!   still there, whole, after it;
//! - steering sees the full fleet up again within two health intervals of
//!   each restart (measured from the restarted process being ready);
//! - a bookmark committed before the chaos survives it;
//! - plays go on across kills, on fallback appliances (failed plays counted).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::Rng;
use serde::Serialize;

use crate::lab::{self, LabArgs, say};
use crate::soak::{self, CHURNED, Churn, ChurnReport};

#[derive(Debug, Clone)]
pub struct ChaosArgs {
    pub lab: LabArgs,
    pub seed: u64,
    /// Pause between a restart and the next kill: uniform in this range.
    pub pause: (Duration, Duration),
    /// How long a killed process stays down before it is started again:
    /// uniform in this range (a service manager's restart delay).
    pub down: (Duration, Duration),
    /// Steering's health-poll interval in the lab.
    pub health_interval: Duration,
}

/// What the lab's processes are, for picking a victim.
const VICTIMS: [&str; 8] = [
    "steering",
    "oca-x1",
    "oca-a1",
    "oca-b1",
    "oca-c1",
    "fill-agent oca-a1",
    "fill-agent oca-b1",
    "fill-agent oca-c1",
];

#[derive(Debug, Default, Serialize)]
pub struct Kills {
    pub count: u32,
    /// Kills after which steering had seen the fleet not whole (for a
    /// steering kill: could not answer) before the restart.
    pub seen_down: u32,
    /// Restart ready → steering lists the whole fleet up, per kill (ms).
    pub converged_ms: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub duration_s: f64,
    pub health_interval_ms: u64,
    pub kills: BTreeMap<String, Kills>,
    /// Kills after which steering took longer than two health intervals.
    pub slow_convergence: Vec<String>,
    /// Committed objects missing or changed after a kill.
    pub lost: Vec<String>,
    pub bookmark_kept: bool,
    pub churn: ChurnReport,
    pub players: BTreeMap<String, serde_json::Value>,
}

impl ChaosReport {
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.slow_convergence.iter().cloned());
        for l in &self.lost {
            out.push(format!("lost: {l}"));
        }
        if !self.bookmark_kept {
            out.push("the bookmark committed before the chaos is gone".into());
        }
        out.extend(soak::byte_failures(&self.churn, &self.players));
        out
    }

    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "chaos: {:.0} s, seed {}, health interval {} ms",
            self.duration_s, self.seed, self.health_interval_ms
        );
        for (victim, k) in &self.kills {
            let mut ms = k.converged_ms.clone();
            ms.sort_unstable();
            let _ = writeln!(
                o,
                "  kill -9 {victim:<18} ×{:<3} ({:>2} seen down) fleet up again after: median {} ms, max {} ms",
                k.count,
                k.seen_down,
                ms.get(ms.len() / 2).copied().unwrap_or(0),
                ms.last().copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            o,
            "  committed objects lost: {}; bookmark kept: {}; {} fills of {CHURNED} ({}), {} wrong",
            self.lost.len(),
            self.bookmark_kept,
            self.churn.cycles,
            lab::mb(self.churn.bytes),
            self.churn.wrong.len()
        );
        for (isp, r) in &self.players {
            let _ = writeln!(
                o,
                "  ISP {isp}: {} plays, {} refused while steering was down, errors after the answer {}, \
                 {} failovers, {} segments verified, wrong bytes {}",
                r["plays"]["started"],
                r["plays"]["failed"],
                r["plays"]["errors"],
                r["failovers"],
                r["verified_segments"],
                r["wrong_bytes"]
            );
        }
        o
    }
}

/// The whole fleet up at steering?
fn fleet_up(s: &e2e::stack::Stack, size: usize) -> bool {
    let Some(r) = e2e::http(s.addr, "GET", "/v1/appliances", &[], b"") else {
        return false;
    };
    let v = r.json();
    v.as_array()
        .is_some_and(|all| all.len() == size && all.iter().all(|a| a["up"] == true))
}

pub fn run(args: &ChaosArgs, stop: Arc<AtomicBool>) -> Result<ChaosReport> {
    let mut lab = lab::start(&args.lab, &[soak::churned_spec()], &stop)?;
    let fleet_size = lab.s.appliances.len();

    // A committed record: a bookmark, before anything is killed.
    let alice = lab.s.token("alice");
    let auth = format!("Bearer {alice}");
    let client: std::net::IpAddr = "127.1.0.9".parse()?;
    let play = lab.s.play(client, &alice, "t1", "browser", "main").json();
    let id = play["play_id"]
        .as_str()
        .context("no play for the bookmark")?;
    let body = serde_json::json!({"play_id": id, "position": 33.0}).to_string();
    // Committed means answered 200 (a slow bookmark store answers 503).
    lab::until(&stop, "the bookmark committed", || {
        let r = e2e::http(
            lab.s.addr,
            "POST",
            "/v1/bookmarks",
            &[("Authorization", &auth)],
            body.as_bytes(),
        )?;
        (r.status == 200).then_some(())
    })?;
    let path = format!("/v1/plays/{id}");
    e2e::http(
        lab.s.addr,
        "DELETE",
        &path,
        &[("Authorization", &auth)],
        b"",
    );

    // What each steady appliance holds now: none of it may be lost.
    let steady = ["oca-x1", "oca-a1", "oca-b1"];
    let held: BTreeMap<&str, BTreeMap<String, u64>> = steady
        .iter()
        .map(|id| (*id, soak::objects(&lab.s.root(id).join("disk0"))))
        .collect();

    say(format!(
        "chaos: seed {}; kill -9 of a random process every {:.0}-{:.0} s, down {:.1}-{:.1} s, for {:.0} s, \
         while {} viewers in each ISP watch and {CHURNED} is filled again and again",
        args.seed,
        args.pause.0.as_secs_f64(),
        args.pause.1.as_secs_f64(),
        args.down.0.as_secs_f64(),
        args.down.1.as_secs_f64(),
        args.lab.duration.as_secs_f64(),
        args.lab.viewers
    ));
    let players = lab::spawn_players(&lab, args.lab.duration, Some(&lab.s.packaged))?;
    let churn = Churn::default();
    let agent_pid = AtomicU32::new(lab.agents[CHURNED].child.id());
    let disk = lab.s.root(CHURNED).join("disk0");
    let packaged = lab.s.packaged.clone();
    let admin = lab.s.admin(CHURNED).context("oca-c1's admin address")?;
    let finish = AtomicBool::new(false);
    let mut rng = Rng(args.seed | 1);
    let mut kills: BTreeMap<String, Kills> = BTreeMap::new();
    let mut slow = Vec::new();
    let mut lost = Vec::new();
    let limit = args.health_interval * 2;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| soak::churn(&disk, admin, &packaged, &agent_pid, &finish, &stop, &churn));
        loop {
            let span = args.pause.1.saturating_sub(args.pause.0).as_millis() as u64;
            let pause = args.pause.0 + Duration::from_millis(rng.below(span.max(1)));
            std::thread::sleep(pause);
            if started.elapsed() >= args.lab.duration || stop.load(Relaxed) {
                break;
            }
            let victim = VICTIMS[rng.below(VICTIMS.len() as u64) as usize];
            let span = args.down.1.saturating_sub(args.down.0).as_millis() as u64;
            let down = args.down.0 + Duration::from_millis(rng.below(span + 1));
            match victim.strip_prefix("fill-agent ") {
                Some(id) => lab.agents.get_mut(id).context("no agent")?.kill9(),
                None if victim == "steering" => lab.s.steering.kill9(),
                None => lab
                    .s
                    .appliances
                    .get_mut(victim)
                    .context("no appliance")?
                    .0
                    .kill9(),
            }
            std::thread::sleep(down);
            let seen_down = !fleet_up(&lab.s, fleet_size);
            match victim.strip_prefix("fill-agent ") {
                Some(id) => {
                    let id = *lab.agents.keys().find(|k| **k == id).context("no agent")?;
                    let new = lab::start_agent(&lab.s, id, lab.fill_rate_bps);
                    if id == CHURNED {
                        agent_pid.store(new.child.id(), Relaxed);
                    }
                    lab.agents.insert(id, new);
                }
                None if victim == "steering" => lab.s.restart_steering(),
                None => lab.s.restart_appliance_in_place(victim),
            }
            let ready = Instant::now();
            let deadline = ready + Duration::from_secs(60);
            while !fleet_up(&lab.s, fleet_size) {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the fleet was not up again a minute after kill -9 of {victim}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let took = ready.elapsed();
            if took > limit {
                slow.push(format!(
                    "after kill -9 of {victim} at {:.1} s, steering took {} ms to see the whole fleet up \
                     (two health intervals: {} ms)",
                    (ready - started).as_secs_f64(),
                    took.as_millis(),
                    limit.as_millis()
                ));
            }
            let k = kills.entry(victim.to_owned()).or_default();
            k.count += 1;
            k.seen_down += u32::from(seen_down);
            k.converged_ms.push(took.as_millis() as u64);
            if let Some(before) = held.get(victim) {
                let now = soak::objects(&lab.s.root(victim).join("disk0"));
                for (key, size) in before {
                    if now.get(key) != Some(size) {
                        lost.push(format!("{victim} {key} after its kill -9"));
                    }
                }
            }
        }
        // Let the churned appliance's current fill finish, then stop it.
        finish.store(true, Relaxed);
        Ok(())
    })?;
    let ran = started.elapsed().as_secs_f64();
    for (id, before) in &held {
        let keys: Vec<String> = before.keys().cloned().collect();
        for key in soak::differing(&lab.s.root(id).join("disk0"), &lab.s.packaged, &keys) {
            lost.push(format!("{id} {key} differs from the catalogue at the end"));
        }
    }
    let mut reports = BTreeMap::new();
    for (isp, r) in lab::collect_players(players, &stop)? {
        reports.insert(isp.to_owned(), r.unwrap_or(serde_json::Value::Null));
    }
    let again = lab.s.play(client, &alice, "t1", "browser", "main").json();
    let bookmark_kept = again["resume_position"] == 33.0;
    Ok(ChaosReport {
        seed: args.seed,
        duration_s: ran,
        health_interval_ms: args.health_interval.as_millis() as u64,
        kills,
        slow_convergence: slow,
        lost,
        bookmark_kept,
        churn: churn.report(),
        players: reports,
    })
}
