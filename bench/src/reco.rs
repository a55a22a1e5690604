//! `oca-bench reco`: recommendations' quality offline. A viewing trace with
//! profiles (generated like `fleet-sim`'s, with `assign_profiles`, or read
//! from a file in its format) is split: each profile's last new title is
//! held out, the model trains on the rest, and popular-in-region,
//! item-to-item and the full ranker are scored by where they put the
//! held-out title (recall@k, NDCG@k). With several `--affinity` values the
//! same trace is scored with profiles of distinct tastes and without.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use steering::reco::eval::{Method, evaluate, split};
use steering::reco::model::{Event, Params};

use crate::fleetsim::trace::{self, NO_PROFILE, World};

/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Args, Serialize)]
pub struct RecoArgs {
    /// A trace with a `profile` column (else one is generated).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 14)]
    pub days: usize,
    #[arg(long, default_value_t = 2_000)]
    pub titles: usize,
    #[arg(long, default_value_t = 20)]
    pub sites: usize,
    #[arg(long, default_value_t = 20_000.0)]
    pub sessions_per_day: f64,
    /// Profiles per ISP site in a generated trace.
    #[arg(long, default_value_t = 100)]
    pub profiles_per_site: usize,
    #[arg(long, default_value_t = 8)]
    pub genres: usize,
    /// How strongly profiles keep to their two genres (0: not at all);
    /// comma-separated for several runs on one trace.
    #[arg(long, default_value = "0.9,0", value_delimiter = ',')]
    pub affinity: Vec<f64>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,

    /// Profiles with fewer distinct titles before the held-out one are not scored.
    #[arg(long, default_value_t = 5)]
    pub min_history: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct RecoReport {
    pub k: usize,
    pub runs: Vec<RecoRun>,
}

#[derive(Debug, Serialize)]
pub struct RecoRun {
    /// `None` for a trace read from a file.
    pub affinity: Option<f64>,
    pub events: usize,
    pub profiles_scored: usize,
    pub model_version: String,
    /// The full ranker's fusion weights (factor model, co-watch, popularity)
    /// as learned from the history.
    pub fusion: [f32; 3],
    pub train_seconds: f64,
    pub methods: Vec<MethodScore>,
}

#[derive(Debug, Serialize)]
pub struct MethodScore {
    pub method: &'static str,
    pub recall: f64,
    pub ndcg: f64,
}

/// A world's sessions as play events (`isp/pN` profiles).
fn events(world: &World) -> Vec<Event> {
    world
        .sessions
        .iter()
        .filter(|s| s.profile != NO_PROFILE)
        .map(|s| {
            let site = &world.sites[s.site as usize];
            Event {
                profile: format!("{}/p{}", site.isp, s.profile),
                region: world.regions[site.region].name.clone(),
                title: world.titles[s.title as usize].id.clone(),
                at: s.start,
            }
        })
        .collect()
}

fn score(world: &World, affinity: Option<f64>, args: &RecoArgs) -> Result<RecoRun> {
    let events = events(world);
    if events.is_empty() {
        bail!("the trace has no sessions with a profile");
    }
    let now = events.iter().map(|e| e.at).max().unwrap_or(0) + 1;
    let s = split(&events, args.min_history);
    let started = Instant::now();
    let (model, quality) = evaluate(&s, args.k, now, &Params::default());
    let train_seconds = started.elapsed().as_secs_f64();
    Ok(RecoRun {
        affinity,
        events: events.len(),
        profiles_scored: s.held_out.len(),
        fusion: model.fusion(),
        model_version: model.version,
        train_seconds,
        methods: Method::ALL
            .iter()
            .map(|m| {
                let q = quality
                    .iter()
                    .find(|(x, _)| x == m)
                    .expect("every method")
                    .1;
                MethodScore {
                    method: m.name(),
                    recall: q.recall,
                    ndcg: q.ndcg,
                }
            })
            .collect(),
    })
}

pub fn reco(args: &RecoArgs) -> Result<RecoReport> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let mut runs = Vec::new();
    match &args.trace {
        Some(path) => runs.push(score(&trace::read(path)?, None, args)?),
        None => {
            let world = trace::generate(&trace::Spec {
                seed: args.seed,
                days: args.days,
                titles: args.titles,
                sites: args.sites,
                sessions_per_day: args.sessions_per_day,
                launches_per_day: 2.0,
            });
            for &a in &args.affinity {
                if !(0.0..=1.0).contains(&a) {
                    bail!("--affinity: each between 0 and 1");
                }
                let mut w = world.clone();
                trace::assign_profiles(&mut w, args.profiles_per_site, args.genres, a, args.seed);
                runs.push(score(&w, Some(a), args)?);
            }
        }
    }
    Ok(RecoReport { k: args.k, runs })
}

impl RecoReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        for r in &self.runs {
            s += &format!(
                "affinity {}: {} plays, {} profiles scored, model {} (fusion {:?}) trained in {:.1} s\n",
                r.affinity.map_or("(file)".into(), |a| format!("{a}")),
                r.events,
                r.profiles_scored,
                r.model_version,
                r.fusion,
                r.train_seconds
            );
            for m in &r.methods {
                s += &format!(
                    "  {:<18} recall@{} {:.4}  NDCG@{} {:.4}\n",
                    m.method, self.k, m.recall, self.k, m.ndcg
                );
            }
        }
        s
    }
}
