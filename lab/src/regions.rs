//! `--regions 2`: the control plane in two regions. steering runs as two
//! instances, `steer-a` in eu-west and `steer-b` in us-east, on one
//! PostgreSQL primary with a synchronous streaming standby; appliances and
//! viewers are given both instances, their own region's first. While the
//! viewers play, two drills, narrated and measured:
//!
//! 1. eu-west's steering is killed (`kill -9`): how long until a new play
//!    succeeds in us-east, and what the viewers saw (their requests move to
//!    us-east);
//! 2. the PostgreSQL primary is killed and the standby promoted: how long
//!    until a new play succeeds again, without restarting steering.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::stack;
use serde::Serialize;

use crate::lab::{self, LabArgs, say};

/// What the drills measured (the `--results` file's `report`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// From killing eu-west's steering to the first new play answered 200 by
    /// us-east, asked as a fresh viewer given both would ask (eu-west first).
    pub region_kill_to_first_play_ms: f64,
    /// From killing the PostgreSQL primary (the standby promoted at once) to
    /// the first new play answered 200.
    pub database_kill_to_first_play_ms: f64,
    /// When the drills ran, seconds into the viewing.
    pub region_kill_at_s: f64,
    pub database_kill_at_s: f64,
    /// Each ISP's `oca-bench players` report.
    pub viewers: Vec<(String, serde_json::Value)>,
}

impl Report {
    /// The figures, for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "region kill → first new play   {:.0} ms\ndatabase kill → first new play {:.0} ms\n",
            self.region_kill_to_first_play_ms, self.database_kill_to_first_play_ms
        );
        for (isp, r) in &self.viewers {
            out += &format!(
                "ISP {isp} viewers: {} plays, {} failed, {} moves to another steering instance, \
                 {} rebuffers ({:.2} s stalled)\n",
                r["plays"]["started"],
                r["plays"]["failed"],
                r["steering_failovers"],
                r["rebuffers"],
                r["rebuffer_s"].as_f64().unwrap_or(0.0)
            );
        }
        out
    }

    /// What went wrong for viewers: a refused or failed play, a failed
    /// bookmark, a play error.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (isp, r) in &self.viewers {
            if r.is_null() {
                out.push(format!("ISP {isp}: no report from the players"));
                continue;
            }
            let failed = r["plays"]["failed"].as_u64().unwrap_or(0);
            if failed > 0 {
                out.push(format!("ISP {isp}: {failed} plays refused or unanswered"));
            }
            if r["plays"]["errors"]
                .as_object()
                .is_some_and(|e| !e.is_empty())
            {
                out.push(format!("ISP {isp}: play errors {}", r["plays"]["errors"]));
            }
        }
        out
    }
}

/// Run the lab in two regions with both drills; the report, also written to
/// `results` (with the options and the machine) when given.
pub fn run(args: &LabArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    say("PostgreSQL: a primary and a synchronous streaming standby ...");
    let mut primary =
        temp_postgres::Server::start().map_err(|e| anyhow::anyhow!("PostgreSQL: {e}"))?;
    primary
        .create_database("steering")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let standby = primary
        .synchronous_standby()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Both hosts: whichever accepts writes is used, so a promoted standby is
    // found without restarting steering.
    let url = format!(
        "postgres://postgres@{},{}/steering?target_session_attrs=read-write",
        primary.host_port(),
        standby.host_port()
    );
    say(format!(
        "  primary {}, standby {}; steering is given both (target_session_attrs=read-write)",
        primary.host_port(),
        standby.host_port()
    ));
    let mut us_east = None;
    let mut lab = lab::start_on(args, &[], &stop, Some(&url), |s| {
        let b = s.start_instance("steer-b", "us-east");
        let b_addr = b.addr("http=");
        say(format!(
            "steering in us-east: http://{b_addr} (instance steer-b, the same database); \
             eu-west's is steer-a"
        ));
        say(
            "appliances and their fill agents are given both instances, eu-west's first; \
             restarting the appliances with that ...",
        );
        let ids: Vec<&'static str> = s.appliances.keys().copied().collect();
        for id in ids {
            let cfg = s.root(id).join("oca.toml");
            let text = std::fs::read_to_string(&cfg)?.replace(
                &format!("url = \"http://{}\"", s.addr),
                &format!("url = [\"http://{}\", \"http://{b_addr}\"]", s.addr),
            );
            std::fs::write(&cfg, text)?;
            s.restart_appliance_in_place(id);
        }
        // The fill agents, started next, are given both too.
        s.more_instances.push(b_addr);
        us_east = Some(b);
        Ok(())
    })?;
    let b = us_east.expect("started before the fill");
    let b_addr = b.addr("http=");
    lab.steering.push(format!("http://{b_addr}"));
    lab::until(&stop, "us-east to see every appliance eligible", || {
        let r = e2e::http(b_addr, "GET", "/v1/appliances", &[], b"")?;
        let list = r.json();
        let list = list.as_array()?;
        list.iter().all(|a| a["eligible"] == true).then_some(())
    })?;
    say(lab::viewers_line(
        args.viewers,
        args.duration,
        lab::title_length(&lab.s.packaged, "t1"),
    ));
    say(format!(
        "viewers are given both instances: --steering {}",
        lab.steering.join(",")
    ));
    let running = lab::spawn_players(&lab, args.duration, None)?;
    let viewing = Instant::now();
    let token = lab.s.token("alice");
    let client: IpAddr = "127.1.0.99".parse()?;

    // Drill 1: eu-west's steering dies.
    pause(&stop, viewing + args.duration / 3);
    let region_at = viewing.elapsed();
    say(format!(
        "drill 1, {:.0} s in: kill -9 eu-west's steering (steer-a) while the viewers play",
        region_at.as_secs_f64()
    ));
    let a_addr = lab.s.addr;
    lab.s.steering.kill9();
    let killed = Instant::now();
    first_play(&stop, &[a_addr, b_addr], client, &token)?;
    let region = killed.elapsed();
    say(format!(
        "  a new play succeeded in us-east {:.0} ms after the kill (a fresh viewer: eu-west refused, us-east answered)",
        ms(region)
    ));

    // Drill 2: the database primary dies; the standby is promoted.
    pause(&stop, viewing + args.duration * 2 / 3);
    let database_at = viewing.elapsed();
    say(format!(
        "drill 2, {:.0} s in: kill the PostgreSQL primary; promote the standby",
        database_at.as_secs_f64()
    ));
    primary.kill().map_err(|e| anyhow::anyhow!("{e}"))?;
    let killed = Instant::now();
    standby.promote().map_err(|e| anyhow::anyhow!("{e}"))?;
    first_play(&stop, &[b_addr], client, &token)?;
    let database = killed.elapsed();
    say(format!(
        "  a new play succeeded {:.0} ms after the primary died (steering not restarted)",
        ms(database)
    ));

    let mut viewers = Vec::new();
    for (isp, report) in lab::collect_players(running, &stop)? {
        match report {
            None => say(format!("  ISP {isp}: stopped before the viewers finished")),
            Some(r) => {
                lab::describe(isp, &r);
                say(format!(
                    "    moves to another steering instance: {}; stalled {:.2} s in {} rebuffers",
                    r["steering_failovers"],
                    r["rebuffer_s"].as_f64().unwrap_or(0.0),
                    r["rebuffers"]
                ));
                viewers.push((isp.to_owned(), r));
            }
        }
    }
    drop(lab);
    drop(b);
    Ok(Report {
        region_kill_to_first_play_ms: ms(region),
        database_kill_to_first_play_ms: ms(database),
        region_kill_at_s: region_at.as_secs_f64(),
        database_kill_at_s: database_at.as_secs_f64(),
        viewers,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Wait until `at` (the drills' place in the viewing), or a stop.
fn pause(stop: &AtomicBool, at: Instant) {
    while Instant::now() < at && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Press play as a fresh viewer given `instances` in order would, again and
/// again until one answers 200 (the probe play is ended at once).
fn first_play(
    stop: &AtomicBool,
    instances: &[std::net::SocketAddr],
    client: IpAddr,
    token: &str,
) -> anyhow::Result<()> {
    lab::until(stop, "a new play to succeed", || {
        instances.iter().find_map(|addr| {
            // A dead instance refuses the connection: on to the next.
            let r = stack::try_play_at(*addr, client, token, "t1", "browser", "main")?;
            if r.status != 200 {
                return None;
            }
            let auth = format!("Bearer {token}");
            if let Some(id) = r.json()["play_id"].as_str() {
                let path = format!("/v1/plays/{id}");
                let _ = e2e::http(*addr, "DELETE", &path, &[("Authorization", &auth)], b"");
            }
            Some(())
        })
    })
}
