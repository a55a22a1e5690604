//! Offline quality: hold out each profile's last new title, train on the
//! rest, and see where each method ranks the held-out title: recall@k (was
//! it in the top k) and NDCG@k (how high), averaged over profiles.

use std::collections::{HashMap, HashSet};

use super::model::{Event, Model, Params, RowsInput, candidates, histories, train, trending};

/// A history split for evaluation.
pub struct Split {
    pub train: Vec<Event>,
    /// Per profile: the title held out and the profile's region.
    pub held_out: Vec<(String, String, String)>,
}

/// Hold out, for every profile with at least `min_history` distinct titles
/// before it, its last play of a title it had not played before, and every
/// play from then on.
pub fn split(events: &[Event], min_history: usize) -> Split {
    let mut by_profile: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_profile.entry(e.profile.as_str()).or_default().push(e);
    }
    let mut cut: HashMap<&str, u64> = HashMap::new();
    let mut held_out = Vec::new();
    let mut names: Vec<&str> = by_profile.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        let list = by_profile.get_mut(name).expect("listed");
        list.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.title.cmp(&b.title)));
        let mut seen: HashSet<&str> = HashSet::new();
        let mut last_new = None;
        for (k, e) in list.iter().enumerate() {
            if seen.insert(e.title.as_str()) {
                last_new = Some(k);
            }
        }
        let Some(k) = last_new else { continue };
        let before: HashSet<&str> = list[..k].iter().map(|e| e.title.as_str()).collect();
        if before.len() < min_history {
            continue;
        }
        let e = list[k];
        cut.insert(name, e.at);
        held_out.push((name.to_owned(), e.region.clone(), e.title.clone()));
    }
    let train = events
        .iter()
        .filter(|e| cut.get(e.profile.as_str()).is_none_or(|&at| e.at < at))
        .cloned()
        .collect();
    Split { train, held_out }
}

/// recall@k and NDCG@k of one method.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quality {
    pub recall: f64,
    pub ndcg: f64,
    pub profiles: usize,
}

/// The three methods compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The region's most played titles (time-decayed), not yet watched.
    PopularInRegion,
    /// Co-watched with the profile's history only.
    ItemToItem,
    /// Candidates from every source, ranked by the trained model.
    Full,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::PopularInRegion, Method::ItemToItem, Method::Full];

    pub fn name(self) -> &'static str {
        match self {
            Method::PopularInRegion => "popular-in-region",
            Method::ItemToItem => "item-to-item",
            Method::Full => "full ranker",
        }
    }
}

/// What scoring needs besides the model, computed once per split.
struct Context<'a> {
    hist: HashMap<&'a str, Vec<&'a str>>,
    trend: HashMap<&'a str, Vec<&'a str>>,
    new: Vec<&'a str>,
}

fn context<'a>(split: &'a Split, now: u64, params: &Params) -> Context<'a> {
    let hist = histories(&split.train, params.history);
    let mut regions: Vec<&str> = split.held_out.iter().map(|(_, r, _)| r.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    let trend = regions
        .iter()
        .map(|r| (*r, trending(&split.train, r, now, 2.0 * 86_400.0)))
        .collect();
    // New: first played within the last week of the training history.
    let mut first: HashMap<&str, u64> = HashMap::new();
    for e in &split.train {
        let f = first.entry(e.title.as_str()).or_insert(e.at);
        *f = (*f).min(e.at);
    }
    let mut new: Vec<(&str, u64)> = first
        .into_iter()
        .filter(|(_, at)| *at + 7 * 86_400 >= now)
        .collect();
    new.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Context {
        hist,
        trend,
        new: new.into_iter().map(|(t, _)| t).collect(),
    }
}

/// Where `method` puts each held-out title: recall@k and NDCG@k.
fn score(model: &Model, split: &Split, cx: &Context<'_>, method: Method, k: usize) -> Quality {
    let (mut hits, mut gain) = (0usize, 0f64);
    for (profile, region, title) in &split.held_out {
        let history: &[&str] = cx.hist.get(profile.as_str()).map_or(&[], Vec::as_slice);
        let watched: HashSet<&str> = history.iter().copied().collect();
        let trending: &[&str] = cx.trend.get(region.as_str()).map_or(&[], Vec::as_slice);
        let list: Vec<&str> = match method {
            Method::PopularInRegion => trending
                .iter()
                .filter(|t| !watched.contains(**t))
                .take(k)
                .copied()
                .collect(),
            Method::ItemToItem => model.rank_cowatch(history, &watched, k),
            Method::Full => {
                let input = RowsInput {
                    profile,
                    history,
                    trending,
                    new_releases: &cx.new,
                    allowed: &|_| true,
                    per_row: k,
                };
                let cands = candidates(model, &input);
                model
                    .rank(profile, history, &cands, trending)
                    .into_iter()
                    .take(k)
                    .collect()
            }
        };
        if let Some(rank) = list.iter().position(|t| t == title) {
            hits += 1;
            gain += 1.0 / ((rank + 2) as f64).log2();
        }
    }
    let n = split.held_out.len().max(1) as f64;
    Quality {
        recall: hits as f64 / n,
        ndcg: gain / n,
        profiles: split.held_out.len(),
    }
}

/// The fusion weights the full ranker is tuned over (factor model, co-watch,
/// popularity): from ignoring the region's popularity to following it alone
/// (an audience whose tastes do not differ is best served by it).
const CANDIDATE_FUSIONS: [[f32; 3]; 8] = [
    [1.0, 1.0, 0.0],
    [1.0, 1.0, 0.5],
    [1.0, 1.0, 1.0],
    [1.0, 1.0, 2.0],
    [1.0, 1.0, 4.0],
    [1.0, 1.0, 8.0],
    [1.0, 1.0, 32.0],
    [0.0, 0.0, 1.0],
];

/// Train on `events`, with the full ranker's fusion weights learned from
/// them: each profile's last new title is held out of `events`, a model
/// trained on the rest ranks with each candidate weighting, and the weighting
/// that recalls the most (then ranks highest) is kept for the model trained
/// on everything. How much a profile's own history should count against
/// the region's popularity depends on how distinct the audience's tastes
/// are, which the history says and a constant cannot.
pub fn train_tuned(events: &[Event], now: u64, params: &Params) -> Model {
    let inner = split(events, 3);
    let mut best = params.fusion;
    if inner.held_out.len() >= 20 {
        let mut probe = train(&inner.train, now, params);
        let cx = context(&inner, now, params);
        let mut top = (-1.0, -1.0);
        for fusion in CANDIDATE_FUSIONS {
            probe.set_fusion(fusion);
            let q = score(&probe, &inner, &cx, Method::Full, 10);
            if (q.recall, q.ndcg) > top {
                top = (q.recall, q.ndcg);
                best = fusion;
            }
        }
    }
    train(
        events,
        now,
        &Params {
            fusion: best,
            ..*params
        },
    )
}

/// Train (weights tuned on the training part only) and score every method
/// at `k`; also answers the model.
pub fn evaluate(
    split: &Split,
    k: usize,
    now: u64,
    params: &Params,
) -> (Model, Vec<(Method, Quality)>) {
    let model = train_tuned(&split.train, now, params);
    let cx = context(split, now, params);
    let out = Method::ALL
        .iter()
        .map(|&m| (m, score(&model, split, &cx, m, k)))
        .collect();
    (model, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reco::model::tests::ev;

    #[test]
    fn the_last_new_title_is_held_out_with_what_follows() {
        let e = [
            ev("p", "a", 1),
            ev("p", "b", 2),
            ev("p", "c", 3),
            ev("p", "b", 4),
            ev("q", "a", 1),
        ];
        let s = split(&e, 2);
        assert_eq!(s.held_out, [("p".into(), "eu".into(), "c".into())]);
        let kept: Vec<(&str, u64)> = s.train.iter().map(|e| (e.title.as_str(), e.at)).collect();
        assert_eq!(
            kept,
            [("a", 1), ("b", 2), ("a", 1)],
            "c and the replay after it go"
        );
        assert!(split(&e, 3).held_out.is_empty(), "too short a history");
    }

    #[test]
    fn a_profile_with_a_taste_is_found_by_the_model_not_by_popularity() {
        // Twenty profiles like a1..a4, each playing them in a different
        // order; one more title, `pop`, is played by many outside profiles.
        let mut e = Vec::new();
        for p in 0..20u64 {
            for k in 0..4u64 {
                let t = format!("a{}", (p + k) % 4 + 1);
                e.push(ev(&format!("fan{p}"), &t, 100 + p * 10 + k));
            }
        }
        for p in 0..40u64 {
            e.push(ev(&format!("crowd{p}"), "pop", 50 + p));
            e.push(ev(&format!("crowd{p}"), &format!("x{p}"), 60 + p));
        }
        let s = split(&e, 3);
        let (_, q) = evaluate(&s, 1, 1_000, &Params::default());
        let get = |m| q.iter().find(|(x, _)| *x == m).unwrap().1;
        assert!(
            get(Method::ItemToItem).recall > get(Method::PopularInRegion).recall,
            "{q:?}"
        );
        assert!(
            get(Method::Full).recall >= get(Method::PopularInRegion).recall,
            "{q:?}"
        );
    }
}
