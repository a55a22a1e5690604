//! Playback heartbeats from every play `oca-bench plays` admitted
//! (`--play-heartbeats`): the play API's capacity measured while each active
//! play reports, as real players do, every few seconds.
//!
//! Admitted plays are dealt round-robin to a few heartbeat connections of
//! their own (not the plays'), each keeping its plays in order of when the
//! next heartbeat is due. A heartbeat's latency counts from when it was due,
//! so a steering that falls behind shows in it (no coordinated omission).
//! Each carries the downloads of the segments since the last from the play's
//! primary appliance (one per 4 s of media, as a player of 4 s segments
//! would), and the last, when `--watch` is up, says `ended`. Plays still
//! watching when the run ends are cut without a last heartbeat.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::{Agent, Request};
use crate::plays::Latency;
use crate::stats::histogram;
use crate::url::Url;

/// Media per segment a player of this title downloads.
const SEGMENT: Duration = Duration::from_secs(4);

/// One admitted play that heartbeats.
pub struct Active {
    pub play_id: String,
    /// The play's signed heartbeat URL, if steering gave one.
    pub url: Option<Url>,
    pub auth: String,
    /// `X-Forwarded-For`, as the play had.
    pub client: Option<String>,
    /// The primary appliance (the samples' pathway).
    pub pathway: String,
    pub started: Instant,
}

/// What the heartbeats need to know.
#[derive(Clone)]
pub struct Setup {
    /// `…/v1/plays/`: a play's heartbeat is this + `{id}/heartbeat`.
    pub plays_url: Url,
    pub every: Duration,
    /// How long a play watches; `None`: to the end of the run.
    pub watch: Option<Duration>,
    pub end: Instant,
    pub timeout: Duration,
    pub bind: Option<std::net::IpAddr>,
}

/// Hands admitted plays to the heartbeat connections.
pub struct Beats {
    to: Vec<mpsc::UnboundedSender<Active>>,
    next: AtomicUsize,
}

impl Beats {
    pub fn add(&self, play: Active) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.to.len();
        // A closed worker means the run is over: the play is not reported.
        let _ = self.to[i].send(play);
    }
}

/// One connection's count.
pub struct Tally {
    latency: Histogram<u64>,
    refused: BTreeMap<u16, u64>,
    errors: u64,
    ended: u64,
    plays: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BeatsReport {
    pub every_s: f64,
    pub watch_s: Option<f64>,
    pub connections: usize,
    /// Plays that heartbeated.
    pub plays: u64,
    /// Heartbeats answered 200, and per second of the run.
    pub ok: u64,
    pub ok_per_s: f64,
    /// The last heartbeats, saying `ended`, answered 200.
    pub ended: u64,
    pub refused: BTreeMap<u16, u64>,
    pub errors: u64,
    /// From when each was due to its answer.
    pub latency_ms: Latency,
}

/// Starts `connections` heartbeat connections on the current runtime.
pub fn start(setup: &Setup, connections: usize) -> (Beats, Vec<tokio::task::JoinHandle<Tally>>) {
    let mut to = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (tx, rx) = mpsc::unbounded_channel();
        to.push(tx);
        tasks.push(tokio::spawn(connection(setup.clone(), rx)));
    }
    (
        Beats {
            to,
            next: AtomicUsize::new(0),
        },
        tasks,
    )
}

pub fn report(
    setup: &Setup,
    connections: usize,
    duration: Duration,
    tallies: &[Tally],
) -> BeatsReport {
    let mut latency = histogram();
    let mut refused = BTreeMap::new();
    let (mut errors, mut ended, mut plays) = (0, 0, 0);
    for t in tallies {
        latency.add(&t.latency).expect("same bounds");
        for (s, n) in &t.refused {
            *refused.entry(*s).or_default() += n;
        }
        errors += t.errors;
        ended += t.ended;
        plays += t.plays;
    }
    BeatsReport {
        every_s: setup.every.as_secs_f64(),
        watch_s: setup.watch.map(|w| w.as_secs_f64()),
        connections,
        plays,
        ok: latency.len(),
        ok_per_s: latency.len() as f64 / duration.as_secs_f64(),
        ended,
        refused,
        errors,
        latency_ms: Latency::of(&latency),
    }
}

async fn connection(setup: Setup, mut rx: mpsc::UnboundedReceiver<Active>) -> Tally {
    let mut agent = Agent::new(setup.bind, None);
    let mut t = Tally {
        latency: histogram(),
        refused: BTreeMap::new(),
        errors: 0,
        ended: 0,
        plays: 0,
    };
    // (when due, slot) over the plays in `slots`.
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut slots: Vec<Option<(Active, Instant)>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut open = true;
    loop {
        let next = due.peek().map(|Reverse((at, _))| *at);
        let wake = next.unwrap_or(setup.end).min(setup.end);
        tokio::select! {
            got = rx.recv(), if open => match got {
                Some(play) => {
                    t.plays += 1;
                    let ends = setup.watch.map_or(setup.end, |w| play.started + w);
                    let at = (play.started + setup.every).min(ends);
                    let slot = match free.pop() {
                        Some(i) => { slots[i] = Some((play, ends)); i }
                        None => { slots.push(Some((play, ends))); slots.len() - 1 }
                    };
                    due.push(Reverse((at, slot)));
                }
                None => open = false,
            },
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= setup.end {
                    break;
                }
                let Some(Reverse((at, slot))) = due.pop() else { continue };
                let Some((play, ends)) = slots[slot].take() else { continue };
                let last = at >= ends;
                let ok = beat(&mut agent, &setup, &play, at, last, &mut t).await;
                if last {
                    t.ended += u64::from(ok);
                    free.push(slot);
                } else {
                    due.push(Reverse(((at + setup.every).min(ends), slot)));
                    slots[slot] = Some((play, ends));
                }
            }
        }
    }
    t
}

/// Sends one heartbeat due `at`; true if answered 200.
async fn beat(
    agent: &mut Agent,
    setup: &Setup,
    play: &Active,
    at: Instant,
    last: bool,
    t: &mut Tally,
) -> bool {
    let url = match &play.url {
        Some(u) => u.clone(),
        None => match setup.plays_url.join(&format!("{}/heartbeat", play.play_id)) {
            Ok(u) => u,
            Err(_) => {
                t.errors += 1;
                return false;
            }
        },
    };
    let position = at.saturating_duration_since(play.started);
    // The segments downloaded since the last heartbeat: one per 4 s of media.
    let n = (setup.every.as_secs_f64() / SEGMENT.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let sample = serde_json::json!({
        "pathway": play.pathway, "bytes": 2_500_000, "ttfb_ms": 18.0, "download_ms": 410.0,
    });
    let body = serde_json::json!({
        "position": position.as_secs_f64(),
        "state": if last { "ended" } else { "playing" },
        "samples": vec![sample; n],
    })
    .to_string();
    let mut headers = vec![
        ("Authorization", play.auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(c) = &play.client {
        headers.push(("X-Forwarded-For", c));
    }
    let req = Request {
        method: "POST",
        url: &url,
        headers: &headers,
        body: body.as_bytes(),
        keep: false,
    };
    match agent.fetch(&req, Instant::now() + setup.timeout).await {
        Ok(r) if r.status == 200 => {
            let us = at.elapsed().as_micros() as u64;
            t.latency.saturating_record(us.max(1));
            true
        }
        Ok(r) => {
            *t.refused.entry(r.status).or_default() += 1;
            false
        }
        Err(_) => {
            t.errors += 1;
            false
        }
    }
}
