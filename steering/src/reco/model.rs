//! The recommendation model, as pure functions of play history: item-to-item
//! similarity from titles watched by the same profiles (co-watch, cosine with
//! shrinkage), latent factors learned by Bayesian personalised ranking
//! (BPR: implicit feedback, a profile prefers what it watched over what it
//! did not), and the rows built from them. Training is deterministic for a
//! given history, so a version names a model.

use std::collections::{HashMap, HashSet};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// One play in the history: who (a profile, `user/profile`), where, what, when.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub profile: String,
    pub region: String,
    pub title: String,
    pub at: u64,
}

/// How a model is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Latent factors per title and profile.
    pub dim: usize,
    pub epochs: usize,
    pub learning_rate: f32,
    pub regularisation: f32,
    /// Co-watched neighbours kept per title.
    pub neighbours: usize,
    /// Titles a profile watched that count, most recent first.
    pub history: usize,
    /// How the full ranker weighs its three orders (reciprocal-rank
    /// fusion): the factor model's, co-watch's and the region's popularity.
    pub fusion: [f32; 3],
}

impl Default for Params {
    fn default() -> Self {
        Params {
            dim: 32,
            epochs: 40,
            learning_rate: 0.05,
            regularisation: 0.005,
            neighbours: 50,
            history: 200,
            fusion: [1.0, 1.0, 1.0],
        }
    }
}

/// A trained model.
#[derive(Debug, Clone)]
pub struct Model {
    /// `m<trained_at>-<digest of the input>`.
    pub version: String,
    pub trained_at: u64,
    pub events: usize,
    titles: Vec<String>,
    index: HashMap<String, u32>,
    /// Per title, its most co-watched titles with their similarity, best first.
    neighbours: Vec<Vec<(u32, f32)>>,
    dim: usize,
    /// Titles × dim.
    item: Vec<f32>,
    bias: Vec<f32>,
    /// Trained profile vectors.
    profiles: HashMap<String, Vec<f32>>,
    fusion: [f32; 3],
}

/// Each profile's distinct titles, most recent first, at most `cap`.
pub fn histories(events: &[Event], cap: usize) -> HashMap<&str, Vec<&str>> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.title.cmp(&b.title)));
    let mut out: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in sorted {
        let h = out.entry(e.profile.as_str()).or_default();
        if h.len() < cap && !h.contains(&e.title.as_str()) {
            h.push(e.title.as_str());
        }
    }
    out
}

/// Train a model on `events` at `now`.
pub fn train(events: &[Event], now: u64, p: &Params) -> Model {
    let hist = histories(events, p.history);
    // Titles and profiles in a stable order, so training is deterministic.
    let mut titles: Vec<String> = events.iter().map(|e| e.title.clone()).collect();
    titles.sort();
    titles.dedup();
    let index: HashMap<String, u32> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut names: Vec<&str> = hist.keys().copied().collect();
    names.sort_unstable();
    let sets: Vec<Vec<u32>> = names
        .iter()
        .map(|n| hist[n].iter().map(|t| index[*t]).collect())
        .collect();

    // Co-watch: cosine over the profiles' title sets, shrunk towards zero
    // when few profiles share the pair (a coincidence is not a similarity).
    let mut watchers = vec![0u32; titles.len()];
    let mut pairs: HashMap<(u32, u32), u32> = HashMap::new();
    for set in &sets {
        for &a in set {
            watchers[a as usize] += 1;
        }
        for (k, &a) in set.iter().enumerate() {
            for &b in &set[k + 1..] {
                let key = if a < b { (a, b) } else { (b, a) };
                *pairs.entry(key).or_default() += 1;
            }
        }
    }
    let mut neighbours: Vec<Vec<(u32, f32)>> = vec![Vec::new(); titles.len()];
    for (&(a, b), &n) in &pairs {
        let cos = n as f32 / ((watchers[a as usize] * watchers[b as usize]) as f32).sqrt();
        let sim = cos * n as f32 / (n as f32 + 3.0);
        neighbours[a as usize].push((b, sim));
        neighbours[b as usize].push((a, sim));
    }
    for list in &mut neighbours {
        list.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        list.truncate(p.neighbours);
    }

    // BPR by stochastic gradient descent, seeded from the input.
    let digest = digest(&names, &sets, &titles);
    let mut rng = SmallRng::seed_from_u64(digest);
    let d = p.dim.max(1);
    let mut item: Vec<f32> = (0..titles.len() * d)
        .map(|_| (rng.random::<f32>() - 0.5) * 0.2)
        .collect();
    let mut bias = vec![0f32; titles.len()];
    let mut users: Vec<Vec<f32>> = sets
        .iter()
        .map(|_| (0..d).map(|_| (rng.random::<f32>() - 0.5) * 0.2).collect())
        .collect();
    let member: Vec<HashSet<u32>> = sets.iter().map(|s| s.iter().copied().collect()).collect();
    let mut positives: Vec<(u32, u32)> = sets
        .iter()
        .enumerate()
        .flat_map(|(u, s)| s.iter().map(move |&i| (u as u32, i)))
        .collect();
    let (lr, reg) = (p.learning_rate, p.regularisation);
    let n_titles = titles.len();
    if n_titles > 1 {
        for _ in 0..p.epochs {
            for k in (1..positives.len()).rev() {
                positives.swap(k, rng.random_range(0..=k));
            }
            for &(u, i) in &positives {
                let seen = &member[u as usize];
                if seen.len() >= n_titles {
                    continue;
                }
                let j = loop {
                    let j = rng.random_range(0..n_titles) as u32;
                    if !seen.contains(&j) {
                        break j;
                    }
                };
                let (i, j) = (i as usize, j as usize);
                let uv = &mut users[u as usize];
                let mut x = bias[i] - bias[j];
                for f in 0..d {
                    x += uv[f] * (item[i * d + f] - item[j * d + f]);
                }
                // d/dx of ln sigmoid(x)
                let g = 1.0 / (1.0 + x.exp());
                for f in 0..d {
                    let (wu, wi, wj) = (uv[f], item[i * d + f], item[j * d + f]);
                    uv[f] += lr * (g * (wi - wj) - reg * wu);
                    item[i * d + f] += lr * (g * wu - reg * wi);
                    item[j * d + f] += lr * (-g * wu - reg * wj);
                }
                bias[i] += lr * (g - reg * bias[i]);
                bias[j] += lr * (-g - reg * bias[j]);
            }
        }
    }
    let profiles = names
        .iter()
        .zip(users)
        .map(|(n, v)| ((*n).to_owned(), v))
        .collect();
    Model {
        version: format!("m{now}-{:08x}", digest as u32),
        trained_at: now,
        events: events.len(),
        titles,
        index,
        neighbours,
        dim: d,
        item,
        bias,
        profiles,
        fusion: p.fusion,
    }
}

/// FNV-1a over the training input: the same history, the same model.
fn digest(names: &[&str], sets: &[Vec<u32>], titles: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in titles {
        eat(t.as_bytes());
        eat(b"\n");
    }
    for (n, s) in names.iter().zip(sets) {
        eat(n.as_bytes());
        for i in s {
            eat(&i.to_le_bytes());
        }
    }
    h
}

/// Reciprocal-rank fusion's damping: ranks beyond a few dozen weigh alike.
const FUSION_K: f32 = 10.0;

impl Model {
    /// The full ranker's fusion weights.
    pub fn fusion(&self) -> [f32; 3] {
        self.fusion
    }

    /// The same model ranking with other fusion weights.
    pub fn set_fusion(&mut self, fusion: [f32; 3]) {
        self.fusion = fusion;
    }

    pub fn knows(&self, title: &str) -> bool {
        self.index.contains_key(title)
    }

    /// The titles most watched by the same profiles as `title`, best first.
    pub fn similar(&self, title: &str) -> impl Iterator<Item = (&str, f32)> + '_ {
        self.index
            .get(title)
            .map_or(&[][..], |&i| &self.neighbours[i as usize][..])
            .iter()
            .map(|&(j, s)| (self.titles[j as usize].as_str(), s))
    }

    /// Item-to-item scores from a history (most recent first, recent plays
    /// weigh more): the sum of each watched title's similarity to the
    /// candidate.
    pub fn cowatch(&self, history: &[&str]) -> HashMap<u32, f32> {
        let mut out: HashMap<u32, f32> = HashMap::new();
        let mut w = 1.0f32;
        for t in history.iter().take(50) {
            if let Some(&i) = self.index.get(*t) {
                for &(j, s) in &self.neighbours[i as usize] {
                    *out.entry(j).or_default() += w * s;
                }
            }
            w *= 0.9;
        }
        out
    }

    /// The profile's latent vector: as trained, or folded in from its
    /// history when the model has not seen it (a new profile).
    fn profile_vector(&self, profile: &str, history: &[&str]) -> Option<Vec<f32>> {
        if let Some(v) = self.profiles.get(profile) {
            return Some(v.clone());
        }
        let d = self.dim;
        let mut v = vec![0f32; d];
        let mut n = 0;
        for t in history.iter().take(50) {
            if let Some(&i) = self.index.get(*t) {
                let row = &self.item[i as usize * d..(i as usize + 1) * d];
                for (x, y) in v.iter_mut().zip(row) {
                    *x += y;
                }
                n += 1;
            }
        }
        (n > 0).then(|| v.into_iter().map(|x| x / n as f32).collect())
    }

    /// The factor model's score of each candidate for this profile.
    fn factor_scores(&self, profile: &str, history: &[&str], candidates: &[u32]) -> Vec<f32> {
        let d = self.dim;
        match self.profile_vector(profile, history) {
            Some(u) => candidates
                .iter()
                .map(|&i| {
                    let v = &self.item[i as usize * d..(i as usize + 1) * d];
                    self.bias[i as usize] + u.iter().zip(v).map(|(a, b)| a * b).sum::<f32>()
                })
                .collect(),
            // Nothing known of the profile: the titles' own appeal.
            None => candidates.iter().map(|&i| self.bias[i as usize]).collect(),
        }
    }

    /// Rank `candidates` for a profile: the factor model's order, the
    /// co-watch order and the region's popularity (`trending`, best first)
    /// fused by reciprocal rank with `Params::fusion`'s weights, best first;
    /// titles the model does not know keep their given order, after the
    /// known ones.
    pub fn rank<'a>(
        &self,
        profile: &str,
        history: &[&str],
        candidates: &[&'a str],
        trending: &[&str],
    ) -> Vec<&'a str> {
        let known: Vec<(usize, u32)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(k, t)| self.index.get(*t).map(|&i| (k, i)))
            .collect();
        let ids: Vec<u32> = known.iter().map(|&(_, i)| i).collect();
        let factor = self.factor_scores(profile, history, &ids);
        let co = self.cowatch(history);
        let popular: HashMap<&str, usize> =
            trending.iter().enumerate().map(|(r, t)| (*t, r)).collect();
        let order = |score: &dyn Fn(usize) -> f32| {
            let mut by: Vec<usize> = (0..ids.len()).collect();
            by.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            let mut rank = vec![0usize; ids.len()];
            for (r, k) in by.into_iter().enumerate() {
                rank[k] = r;
            }
            rank
        };
        let by_factor = order(&|k| factor[k]);
        let by_cowatch = order(&|k| co.get(&ids[k]).copied().unwrap_or(0.0));
        let by_popularity = order(&|k| {
            let t = candidates[known[k].0];
            -(popular.get(t).copied().unwrap_or(trending.len()) as f32)
        });
        let [wf, wc, wp] = self.fusion;
        let mut fused: Vec<(f32, usize)> = (0..ids.len())
            .map(|k| {
                let s = wf / (FUSION_K + by_factor[k] as f32)
                    + wc / (FUSION_K + by_cowatch[k] as f32)
                    + wp / (FUSION_K + by_popularity[k] as f32);
                (s, known[k].0)
            })
            .collect();
        fused.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<&'a str> = fused.iter().map(|&(_, k)| candidates[k]).collect();
        out.extend(
            candidates
                .iter()
                .filter(|t| !self.index.contains_key(**t))
                .copied(),
        );
        out
    }

    /// Item-to-item only: candidates by co-watch score, best first.
    pub fn rank_cowatch(&self, history: &[&str], exclude: &HashSet<&str>, n: usize) -> Vec<&str> {
        let co = self.cowatch(history);
        let mut by: Vec<(u32, f32)> = co.into_iter().collect();
        by.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        by.into_iter()
            .map(|(i, _)| self.titles[i as usize].as_str())
            .filter(|t| !exclude.contains(t))
            .take(n)
            .collect()
    }
}

/// What a profile's rows are built from, besides the model.
pub struct RowsInput<'a> {
    pub profile: &'a str,
    /// Distinct titles it watched, most recent first.
    pub history: &'a [&'a str],
    /// Its region's most played titles lately, best first.
    pub trending: &'a [&'a str],
    /// Titles released lately, newest first.
    pub new_releases: &'a [&'a str],
    /// Whether the account may watch a title now (region, release).
    pub allowed: &'a dyn Fn(&str) -> bool,
    pub per_row: usize,
}

/// One row of recommendations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecoRow {
    /// `top-picks`, `because-you-watched`, `trending` or `new-releases`.
    pub kind: String,
    /// The title the row is about (`because-you-watched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    pub items: Vec<String>,
}

/// Candidates a profile's top picks are ranked from: what is co-watched with
/// its history, what is trending in its region, what is new; never what it
/// watched or may not watch.
pub fn candidates<'a>(model: &'a Model, input: &RowsInput<'a>) -> Vec<&'a str> {
    let watched: HashSet<&str> = input.history.iter().copied().collect();
    let mut out: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let co = model.rank_cowatch(input.history, &watched, 200);
    for t in co
        .into_iter()
        .chain(input.trending.iter().take(100).copied())
        .chain(input.new_releases.iter().take(50).copied())
    {
        if !watched.contains(t) && (input.allowed)(t) && seen.insert(t) {
            out.push(t);
        }
    }
    out
}

/// The rows for one profile: top picks (ranked by the model), because you
/// watched (the most recent title's co-watched titles), trending in the
/// region and new releases. Empty rows are left out.
pub fn rows(model: &Model, input: &RowsInput<'_>) -> Vec<RecoRow> {
    let n = input.per_row.max(1);
    let watched: HashSet<&str> = input.history.iter().copied().collect();
    let fresh = |t: &&str| !watched.contains(*t) && (input.allowed)(t);
    let mut rows = Vec::new();
    if !input.history.is_empty() {
        let cands = candidates(model, input);
        let picks: Vec<String> = model
            .rank(input.profile, input.history, &cands, input.trending)
            .into_iter()
            .take(n)
            .map(str::to_owned)
            .collect();
        rows.push(RecoRow {
            kind: "top-picks".into(),
            because: None,
            items: picks,
        });
        // The most recent watched title the model has neighbours for.
        if let Some(last) = input
            .history
            .iter()
            .find(|t| model.similar(t).next().is_some())
        {
            let items: Vec<String> = model
                .similar(last)
                .map(|(t, _)| t)
                .filter(fresh)
                .take(n)
                .map(str::to_owned)
                .collect();
            rows.push(RecoRow {
                kind: "because-you-watched".into(),
                because: Some((*last).to_owned()),
                items,
            });
        }
    }
    for (kind, list) in [
        ("trending", input.trending),
        ("new-releases", input.new_releases),
    ] {
        rows.push(RecoRow {
            kind: kind.into(),
            because: None,
            items: list
                .iter()
                .filter(|t| fresh(t))
                .take(n)
                .map(|t| (*t).to_owned())
                .collect(),
        });
    }
    rows.retain(|r| !r.items.is_empty());
    rows
}

/// The region's titles by plays, time-decayed with `half_life` seconds,
/// best first (the demand log's popularity, as home rows and fill plans
/// rank it).
pub fn trending<'a>(events: &'a [Event], region: &str, now: u64, half_life: f64) -> Vec<&'a str> {
    let plays = events
        .iter()
        .filter(|e| e.region == region)
        .map(|e| (e.title.as_str(), e.at));
    crate::popularity::popularity(plays, now, half_life)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
