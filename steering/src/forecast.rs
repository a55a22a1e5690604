//! Demand forecast: how many plays each title will get in one region over the
//! next 24 hours, and how many a launch will get on its first day.
//!
//! Pure: counts of past plays in windows that end at `now`, the catalogue's
//! release times and expected-audience weights, and `now` in; a forecast out.
//! Fill planning ranks titles by it, and anything else that wants "what will
//! be watched here tomorrow" may too.
//!
//! The model, in three steps:
//! - **Volume.** The region's plays over the next 24 h are the mean of the
//!   last seven days times a weekly factor: how the same weekday window did
//!   against its week, over up to two weeks. A daily profile (share of a day's
//!   plays per hour) comes from the last seven days at the same hours.
//! - **Titles that have a history** are forecast as a *share* of the region's
//!   daily plays, so weekly seasonality and growth of the service as a whole
//!   do not read as a trend of each title. Up to fourteen daily shares are
//!   weighed, recent days most: halving every two days for a busy title, up
//!   to every ten for a sparse one (its days are mostly noise). The trend is a
//!   weighted least-squares line through their logs, clamped and shrunk
//!   towards none when a title has few plays, so the tail is forecast by its
//!   level and noise is not extrapolated; the level is the line's (geometric)
//!   for busy titles and the plain weighted mean for sparse ones, which the
//!   log of a handful of plays would bias low.
//! - **Launches** (not released yet, or within their first days) have too
//!   little history, so they get a prior: `audience` × the plays of the
//!   region's biggest title, decaying with [`Params::launch_half_life`] after
//!   release. As plays arrive the prior gives way to what was observed,
//!   scaled up by the share of a day's demand the hours since release
//!   covered (a launch at 19:00 has seen most of a day's viewing by 23:00).

use std::collections::HashMap;

pub const HOUR: u64 = 3_600;
pub const DAY: u64 = 86_400;

/// Days of history the model reads (and the store is asked for).
pub const HISTORY_DAYS: usize = 14;
/// Days whose plays decide how fast a title's past is forgotten.
const TREND_DAYS: usize = 7;

/// Plays in one region, counted in windows that end at `now`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// All titles' plays per hour, most recent first: `hourly[0]` counts
    /// `(now - 1 h, now]`. Up to `HISTORY_DAYS × 24` long.
    pub hourly: Vec<f64>,
    /// Per title, plays per day, most recent first: `[0]` counts
    /// `(now - 24 h, now]`. Titles without plays may be absent.
    pub daily: HashMap<String, Vec<f64>>,
}

/// Plays as the store counts them: `(region, title, day, plays)` and
/// `(region, hour, plays)`, day 0 and hour 0 the most recent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub daily: Vec<(String, String, u32, f64)>,
    pub hourly: Vec<(String, u32, f64)>,
}

/// Each region's [`History`] from the store's counts over `days` days.
pub fn histories(counts: &Counts, days: usize) -> HashMap<String, History> {
    let mut out: HashMap<String, History> = HashMap::new();
    for (region, hour, plays) in &counts.hourly {
        let h = out.entry(region.clone()).or_default();
        let hour = *hour as usize;
        if hour < days * 24 {
            if h.hourly.len() < days * 24 {
                h.hourly.resize(days * 24, 0.0);
            }
            h.hourly[hour] += plays;
        }
    }
    for (region, title, day, plays) in &counts.daily {
        let day = *day as usize;
        if day >= days {
            continue;
        }
        let h = out.entry(region.clone()).or_default();
        h.daily
            .entry(title.clone())
            .or_insert_with(|| vec![0.0; days])[day] += plays;
    }
    // A day with no play at all is still a day ("nothing yesterday" is not
    // "no yesterday"), but days before the region's first play are not: a
    // service that started three days ago has three days of history.
    for h in out.values_mut() {
        let oldest = h
            .hourly
            .iter()
            .rposition(|&p| p > 0.0)
            .map_or(0, |i| i / 24 + 1);
        let kept = oldest.max(
            h.daily
                .values()
                .filter_map(|d| d.iter().rposition(|&p| p > 0.0))
                .max()
                .map_or(0, |d| d + 1),
        );
        h.hourly.resize(kept * 24, 0.0);
        for series in h.daily.values_mut() {
            series.truncate(kept);
        }
    }
    out
}

/// What the catalogue says about a title that the forecast uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TitleMeta<'a> {
    pub id: &'a str,
    /// Unix seconds it may first be played.
    pub release: Option<u64>,
    /// Expected first-day audience relative to the region's biggest title
    /// (1.0: as many plays as today's most watched); set at import.
    pub audience: f64,
}

/// Knobs of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// A launch's daily plays halve this often after release (the prior).
    pub launch_half_life_days: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            launch_half_life_days: 3.0,
        }
    }
}

/// The forecast for one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forecast {
    /// Expected plays in `[now, now + 24 h)` per title of the catalogue.
    pub next_day: HashMap<String, f64>,
    /// Expected plays in a title's first 24 h after release, for titles not
    /// released yet (whenever their release is).
    pub first_day: HashMap<String, f64>,
    /// Expected plays of all titles in `[now, now + 24 h)`.
    pub total: f64,
    /// Share of those plays in each hour: `profile[0]` is `[now, now + 1 h)`.
    pub profile: [f64; 24],
}

impl Forecast {
    /// What a title is worth planning for: its next 24 h, or for a title not
    /// yet released, its first 24 h after release (so launches can be placed
    /// before their day).
    pub fn value(&self, title: &str) -> f64 {
        let next = self.next_day.get(title).copied().unwrap_or(0.0);
        let first = self.first_day.get(title).copied().unwrap_or(0.0);
        next.max(first)
    }

    /// The busiest hour's share of the coming day's plays.
    pub fn peak_share(&self) -> f64 {
        self.profile.iter().copied().fold(0.0, f64::max)
    }
}

/// The region's forecast at `now` from its `history`, for `titles`.
pub fn forecast(
    history: &History,
    titles: &[TitleMeta<'_>],
    now: u64,
    params: &Params,
) -> Forecast {
    let days = history.hourly.len() / 24;
    let totals: Vec<f64> = (0..days)
        .map(|k| history.hourly[k * 24..(k + 1) * 24].iter().sum())
        .collect();
    let total = volume(&totals);
    let profile = profile(&history.hourly);

    // Titles with a history, as shares of the region's daily plays.
    let mut next_day: HashMap<String, f64> = HashMap::with_capacity(titles.len());
    for t in titles {
        let Some(series) = history.daily.get(t.id) else {
            continue;
        };
        // Only whole days since release say what the title's level is.
        let usable = match t.release {
            Some(r) if r >= now => 0,
            Some(r) => (((now - r) / DAY) as usize).min(HISTORY_DAYS),
            None => HISTORY_DAYS,
        };
        if let Some(share) = share_forecast(series, &totals, usable) {
            next_day.insert(t.id.to_owned(), share * total);
        }
    }
    // The launch prior's scale: the biggest title with a history.
    let top = next_day.values().copied().fold(0.0, f64::max);
    let half_life = params.launch_half_life_days.max(0.1);
    let decay = |age_days: f64| 0.5f64.powf(age_days.max(0.0) / half_life);

    let mut first_day = HashMap::new();
    for t in titles {
        let Some(release) = t.release else { continue };
        let first = t.audience.max(0.0) * top;
        if release >= now {
            first_day.insert(t.id.to_owned(), first);
            // Released within the coming day: the hours after release count.
            let after = profile_after(&profile, release - now);
            next_day.insert(t.id.to_owned(), first * after);
            continue;
        }
        let age = now - release;
        let age_days = age as f64 / DAY as f64;
        if age_days >= 3.0 {
            continue;
        }
        let prior = first * decay(age_days + 0.5);
        let observed = history
            .daily
            .get(t.id)
            .and_then(|s| s.first().copied())
            .unwrap_or(0.0);
        let estimate = if age < DAY {
            // Part of a day seen: scale it up by the share of a day's demand
            // those hours carried, and trust it as far as they cover and as
            // the counts involved (seen, or expected and not seen) are not
            // tiny.
            let covered = covered_share(&history.hourly, age);
            if covered <= 0.0 {
                prior
            } else {
                let rate = observed / covered * decay(age_days + 0.5);
                let evidence = observed.max(first * covered);
                let weight = covered * evidence / (evidence + 10.0);
                weight * rate + (1.0 - weight) * prior
            }
        } else {
            // Whole days seen: the share model, trusted more with each day.
            let model = next_day.get(t.id).copied().unwrap_or(0.0);
            let weight = (age_days / 3.0).min(1.0);
            weight * model + (1.0 - weight) * prior
        };
        next_day.insert(t.id.to_owned(), estimate);
    }
    Forecast {
        next_day,
        first_day,
        total,
        profile,
    }
}

/// The region's plays over the next 24 h: the last week's mean, times how the
/// same weekday window compared with its week.
fn volume(totals: &[f64]) -> f64 {
    match totals.len() {
        0 => 0.0,
        n if n < 7 => totals.iter().sum::<f64>() / n as f64,
        n => {
            let week = totals[..7].iter().sum::<f64>() / 7.0;
            // The window one week before the coming one is `totals[6]`.
            let mut ratios = Vec::new();
            for w in 0..n / 7 {
                let mean = totals[w * 7..w * 7 + 7].iter().sum::<f64>() / 7.0;
                if mean > 0.0 {
                    ratios.push(totals[w * 7 + 6] / mean);
                }
            }
            let factor = if ratios.is_empty() {
                1.0
            } else {
                (ratios.iter().sum::<f64>() / ratios.len() as f64).clamp(0.5, 2.0)
            };
            week * factor
        }
    }
}

/// Share of a day's plays per hour of the coming day, from the same hours of
/// the last seven days; flat when there is no history.
fn profile(hourly: &[f64]) -> [f64; 24] {
    let mut out = [0.0; 24];
    let days = (hourly.len() / 24).min(7);
    for (j, slot) in out.iter_mut().enumerate() {
        // Hour j of the coming day is hour `24 d + 23 - j` ago, d days back.
        *slot = (0..days).map(|d| hourly[24 * d + 23 - j]).sum();
    }
    let sum: f64 = out.iter().sum();
    if sum > 0.0 {
        out.iter_mut().for_each(|v| *v /= sum);
    } else {
        out = [1.0 / 24.0; 24];
    }
    out
}

/// Share of the coming day's plays after `offset` seconds from now.
fn profile_after(profile: &[f64; 24], offset: u64) -> f64 {
    if offset >= DAY {
        return 0.0;
    }
    let hour = (offset / HOUR) as usize;
    let partial = 1.0 - (offset % HOUR) as f64 / HOUR as f64;
    profile[hour] * partial + profile[hour + 1..].iter().sum::<f64>()
}

/// Share of the last day's plays that fell in its last `age` seconds.
fn covered_share(hourly: &[f64], age: u64) -> f64 {
    let day: f64 = hourly.iter().take(24).sum();
    if day <= 0.0 {
        return (age as f64 / DAY as f64).min(1.0);
    }
    let whole = (age / HOUR) as usize;
    let mut seen: f64 = hourly.iter().take(whole.min(24)).sum();
    if whole < 24 {
        let part = (age % HOUR) as f64 / HOUR as f64;
        seen += hourly.get(whole).copied().unwrap_or(0.0) * part;
    }
    (seen / day).min(1.0)
}

/// The title's share of tomorrow's plays, from up to `usable` recent days of
/// `series` against the region's `totals`; none with no usable day.
///
/// Days weigh less with age: halving every two days for a title with plenty
/// of plays, more slowly (up to a week) for a sparse one, whose days are
/// mostly noise. The trend is a weighted least-squares line through the log
/// of the daily shares, shrunk towards none when there are few plays; the
/// level is carried along it from the days it was measured over to tomorrow.
fn share_forecast(series: &[f64], totals: &[f64], usable: usize) -> Option<f64> {
    let n = usable.min(series.len()).min(totals.len());
    let recent: f64 = series[..n.min(TREND_DAYS)].iter().sum();
    let half_life = (2.0 * (100.0 / recent.max(1.0)).sqrt()).clamp(2.0, 10.0);
    // (x, share, ln share, weight), x = -k: days ago, negative.
    let mut points = Vec::with_capacity(n);
    for k in 0..n {
        if totals[k] <= 0.0 {
            continue;
        }
        // Half a play of pseudo-count keeps the log of a day without plays finite.
        points.push((
            -(k as f64),
            series[k] / totals[k],
            ((series[k] + 0.5) / totals[k]).ln(),
            0.5f64.powf(k as f64 / half_life),
        ));
    }
    if points.is_empty() {
        return None;
    }
    let sw: f64 = points.iter().map(|p| p.3).sum();
    let mean = |f: &dyn Fn(&(f64, f64, f64, f64)) -> f64| {
        points.iter().map(|p| f(p) * p.3).sum::<f64>() / sw
    };
    let (mx, level, my) = (mean(&|p| p.0), mean(&|p| p.1), mean(&|p| p.2));
    let sxx: f64 = points.iter().map(|p| p.3 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| p.3 * (p.0 - mx) * (p.2 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    // A few plays say little about a trend: shrink it towards none, and never
    // extrapolate more than halving or 1.5× a day.
    let slope = (slope * recent / (recent + 30.0)).clamp(-std::f64::consts::LN_2, 1.5f64.ln());
    // From the weighted days' centre (mx, in the past) to tomorrow (x = 1).
    let ahead = (slope * (1.0 - mx)).exp();
    // Two levels: the geometric one (the fitted line: exact for a title that
    // grows or fades steadily, but biased low for a handful of plays a day,
    // where the pseudo-count dominates) and the arithmetic one (unbiased for
    // rare events, but for a fading title dominated by its bigger past).
    // Sparse titles take the arithmetic, busy ones the geometric.
    let mean_total = totals[..n].iter().sum::<f64>() / n as f64;
    let geometric = (my.exp() - 0.5 / mean_total.max(1.0)).max(0.0);
    let sparse = ((100.0 - recent) / 80.0).clamp(0.0, 1.0);
    Some((sparse * level + (1.0 - sparse) * geometric) * ahead)
}

#[cfg(test)]
mod tests;
