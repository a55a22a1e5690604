//! The world a fleet simulation runs in: regions, ISP sites, a catalogue and a
//! viewing trace, generated from a seed or read from files.
//!
//! Generated traces follow what video services report of their viewing:
//! - popularity is Zipf-like over the catalogue, each region with its own
//!   taste (a log-normal perturbation of the global order) and some titles
//!   licensed in one region only;
//! - it drifts day to day (a mean-reverting random walk of each title's
//!   log-popularity per region);
//! - viewing follows the local time of day (an evening peak around 21:00,
//!   a trough before dawn) and the day of the week (Friday to Sunday busier);
//! - new releases arrive a few a day at 08:00 UTC with a launch spike, sized
//!   against the region's biggest title, that halves every two or three days;
//!   the catalogue's `audience` weight is that spike as the studio guessed it
//!   (log-normal error), which is all a forecaster may know beforehand;
//! - sessions last a log-normal time (median 30 min) up to the title's length
//!   at the highest rung of its ladder under 80% of the viewer's bandwidth.
//!
//! # Trace files
//!
//! `FILE` (sessions, sorted by `start`):
//! `start,region,isp,title,watch_s,kbps[,profile]` — unix seconds, the
//! viewer's region and ISP (one simulated site per ISP), the title id, seconds
//! watched, the bitrate in kbit/s, and optionally the viewer's profile within
//! its ISP (`p17`; recommendations are evaluated on traces that have it, see
//! `assign_profiles`).
//!
//! `FILE.titles.csv` (required): `title,minutes,ladder_kbps,release,audience,regions`
//! — the ladder as `;`-separated kbit/s of every rendition (audio included),
//! release as unix seconds (empty: long released), audience as the expected
//! first-day plays relative to the region's biggest title (launches only;
//! empty otherwise), regions `;`-separated or `*`.
//!
//! `FILE.sites.csv` (optional): `isp,region,appliances` — how many embedded
//! appliances each ISP's site has (default 2).
//!
//! `FILE.regions.csv` (optional): `region,utc_offset_minutes` (default 0),
//! for the fill window and the daily peak in local time.

use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::{Rng, RngExt, SeedableRng, rngs::SmallRng};

pub const HOUR: u64 = 3_600;
pub const DAY: u64 = 86_400;

/// Monday 2026-01-05 00:00 UTC: generated traces start on a Monday midnight.
pub const EPOCH: u64 = 1_767_571_200;

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub utc_offset_minutes: i32,
}

/// One ISP's site: the client networks of that ISP, served by its embedded
/// appliances.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub isp: String,
    pub region: usize,
    pub appliances: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Title {
    pub id: String,
    pub minutes: f64,
    /// kbit/s of every rendition, audio included.
    pub ladder_kbps: Vec<u32>,
    pub release: Option<u64>,
    /// Expected first-day plays relative to the region's biggest title.
    pub audience: f64,
    /// Region names, or `*`.
    pub regions: Vec<String>,
}

impl Title {
    /// Bytes of each rendition.
    pub fn rendition_bytes(&self) -> Vec<u64> {
        self.ladder_kbps
            .iter()
            .map(|&k| (self.minutes * 60.0 * f64::from(k) * 125.0) as u64)
            .collect()
    }
}

/// One viewing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub start: u64,
    pub title: u32,
    pub site: u32,
    pub watch_s: u32,
    pub kbps: u32,
    /// The viewer's profile within its site (`NO_PROFILE`: unknown).
    pub profile: u32,
}

/// A session whose viewer is not known (traces without a profile column).
pub const NO_PROFILE: u32 = u32::MAX;

impl Session {
    pub fn bytes(&self) -> u64 {
        u64::from(self.watch_s) * u64::from(self.kbps) * 125
    }
}

#[derive(Debug, Clone, Default)]
pub struct World {
    /// Unix seconds of the first hour (a UTC midnight for generated traces).
    pub start: u64,
    /// Whole days the trace covers.
    pub days: usize,
    pub regions: Vec<Region>,
    pub sites: Vec<Site>,
    pub titles: Vec<Title>,
    /// Sorted by start.
    pub sessions: Vec<Session>,
}

impl World {
    pub fn catalogue_bytes(&self) -> u64 {
        self.titles.iter().flat_map(|t| t.rendition_bytes()).sum()
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub days: usize,
    pub titles: usize,
    pub sites: usize,
    pub sessions_per_day: f64,
    pub launches_per_day: f64,
}

/// Regions: name, UTC offset, share of viewing.
const REGIONS: [(&str, i32, f64); 4] = [
    ("eu-west", 60, 0.35),
    ("us-east", -300, 0.30),
    ("ap-south", 330, 0.20),
    ("sa-east", -180, 0.15),
];

/// Relative viewing per local hour: a trough at 03:00-04:00, an evening peak
/// at 20:00-21:00 (about 4% of a day at the trough hour, 9% at the peak).
const DIURNAL: [f64; 24] = [
    4.0, 2.5, 1.6, 1.2, 1.2, 1.5, 2.2, 3.0, 3.4, 3.8, 4.2, 4.6, 5.0, 5.0, 5.0, 5.3, 5.8, 6.6, 8.0,
    9.6, 10.6, 10.4, 8.4, 6.0,
];

/// Relative viewing per local weekday, Monday first.
const WEEKLY: [f64; 7] = [0.95, 0.93, 0.95, 0.97, 1.08, 1.12, 1.0];

/// A standard video ladder (kbit/s), scaled per title by its complexity, and
/// one audio rendition.
const LADDER: [f64; 6] = [400.0, 800.0, 1500.0, 3000.0, 5000.0, 8000.0];
const AUDIO_KBPS: u32 = 128;

fn normal(rng: &mut impl Rng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A cumulative table for drawing an index by weight.
fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .map(|w| {
            sum += w.max(0.0);
            sum
        })
        .collect()
}

fn draw(cdf: &[f64], u: f64) -> usize {
    let total = cdf.last().copied().unwrap_or(0.0);
    cdf.partition_point(|&c| c <= u * total).min(cdf.len() - 1)
}

/// A world and its trace from `spec`: the same spec, the same trace.
pub fn generate(spec: &Spec) -> World {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    // Every region has a site: fewer sites than regions, fewer regions.
    let used = &REGIONS[..REGIONS.len().min(spec.sites.max(1))];
    let share_sum: f64 = used.iter().map(|r| r.2).sum();
    let share = |r: usize| used[r].2 / share_sum;
    let regions: Vec<Region> = used
        .iter()
        .map(|(n, o, _)| Region {
            name: (*n).to_owned(),
            utc_offset_minutes: *o,
        })
        .collect();

    // Sites per region by the region's share (largest remainder), each
    // region's sites with Zipf-like market shares; the biggest ISPs' sites
    // have three appliances, the next two, the rest one.
    let mut per_region: Vec<usize> = (0..used.len())
        .map(|r| ((share(r) * spec.sites as f64).floor() as usize).max(1))
        .collect();
    let mut left = spec.sites.saturating_sub(per_region.iter().sum());
    for n in per_region.iter_mut() {
        if left == 0 {
            break;
        }
        *n += 1;
        left -= 1;
    }
    let mut sites = Vec::new();
    let mut site_weight = Vec::new();
    for (r, &n) in per_region.iter().enumerate() {
        for k in 0..n {
            let rank = k as f64 / n.max(1) as f64;
            sites.push(Site {
                isp: format!("{}-isp{k:02}", regions[r].name),
                region: r,
                appliances: if rank < 0.2 {
                    3
                } else if rank < 0.5 {
                    2
                } else {
                    1
                },
            });
            site_weight.push(((k + 1) as f64).powf(-0.8));
        }
    }
    let site_cdf: Vec<Vec<usize>> = (0..regions.len())
        .map(|r| (0..sites.len()).filter(|&s| sites[s].region == r).collect())
        .collect();
    let site_tables: Vec<Vec<f64>> = site_cdf
        .iter()
        .map(|list| cumulative(list.iter().map(|&s| site_weight[s])))
        .collect();

    // The catalogue: 30% films, 70% episodes; launches are the last titles.
    let launches = ((spec.launches_per_day * spec.days as f64).round() as usize)
        .min(spec.titles / 4)
        .max(usize::from(spec.titles >= 8));
    let mut titles = Vec::with_capacity(spec.titles);
    let mut boost = vec![0.0f64; spec.titles];
    let mut half_life_days = vec![0.0f64; spec.titles];
    for i in 0..spec.titles {
        let film = rng.random::<f64>() < 0.3;
        let minutes = if film {
            85.0 + 65.0 * rng.random::<f64>()
        } else {
            22.0 + 38.0 * rng.random::<f64>()
        };
        let complexity = 0.6 + 0.6 * rng.random::<f64>();
        let mut ladder: Vec<u32> = LADDER
            .iter()
            .map(|k| (k * complexity).round() as u32)
            .collect();
        ladder.push(AUDIO_KBPS);
        let local = rng.random::<f64>() < 0.1;
        let regions_of = if local {
            vec![regions[rng.random_range(0..regions.len())].name.clone()]
        } else {
            vec!["*".to_owned()]
        };
        let launch = i >= spec.titles - launches;
        let (release, audience) = if launch {
            // Day 1 onwards at 08:00 UTC: the first day has a history to
            // learn from.
            let day = 1 + rng.random_range(0..spec.days.saturating_sub(1).max(1)) as u64;
            let spike = (normal(&mut rng) * 0.8 + 0.4f64.ln()).exp().min(4.0);
            boost[i] = spike;
            half_life_days[i] = 2.0 + rng.random::<f64>();
            let guess = spike * (normal(&mut rng) * 0.3).exp();
            (Some(EPOCH + day * DAY + 8 * HOUR), guess)
        } else {
            (None, 0.0)
        };
        titles.push(Title {
            id: format!("t{i:05}"),
            minutes,
            ladder_kbps: ladder,
            release,
            audience,
            regions: regions_of,
        });
    }

    // Log-popularity: a global Zipf order (exponent 1), each region's taste
    // on top, drifting daily around it.
    let mut order: Vec<usize> = (0..spec.titles).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut base = vec![vec![f64::NEG_INFINITY; spec.titles]; regions.len()];
    for (rank, &i) in order.iter().enumerate() {
        let global = -((rank + 1) as f64).ln();
        for (r, region) in regions.iter().enumerate() {
            let t = &titles[i];
            if t.regions.iter().any(|x| x == "*" || *x == region.name) {
                base[r][i] = global + 0.8 * normal(&mut rng);
            }
        }
    }
    let mut now_pop = base.clone();

    let mut sessions = Vec::with_capacity((spec.sessions_per_day * spec.days as f64) as usize + 1);
    let weekly_mean = WEEKLY.iter().sum::<f64>() / 7.0;
    let diurnal_sum: f64 = DIURNAL.iter().sum();
    for day in 0..spec.days {
        if day > 0 {
            for r in 0..regions.len() {
                for i in 0..spec.titles {
                    let b = base[r][i];
                    if b.is_finite() {
                        let x = now_pop[r][i];
                        now_pop[r][i] = x + 0.12 * normal(&mut rng) - 0.05 * (x - b);
                    }
                }
            }
        }
        // Weights and tables per region for the day; launches are drawn
        // apart, hour by hour, once released.
        let weights: Vec<Vec<f64>> = now_pop
            .iter()
            .map(|xs| {
                xs.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        if i >= spec.titles - launches {
                            0.0
                        } else {
                            x.exp()
                        }
                    })
                    .collect()
            })
            .collect();
        let tables: Vec<Vec<f64>> = weights
            .iter()
            .map(|w| cumulative(w.iter().copied()))
            .collect();
        let tops: Vec<f64> = weights
            .iter()
            .map(|w| w.iter().copied().fold(0.0, f64::max))
            .collect();
        for hour in 0..24 {
            let t0 = EPOCH + day as u64 * DAY + hour as u64 * HOUR;
            let first = sessions.len();
            for (r, region) in regions.iter().enumerate() {
                let local = t0 as i64 + i64::from(region.utc_offset_minutes) * 60;
                let local_hour = (local.rem_euclid(DAY as i64) / HOUR as i64) as usize;
                // 1970-01-01 was a Thursday: weekday 3 counting from Monday.
                let weekday = ((local.div_euclid(DAY as i64) + 3).rem_euclid(7)) as usize;
                let mean = spec.sessions_per_day * share(r) * DIURNAL[local_hour] / diurnal_sum
                    * WEEKLY[weekday]
                    / weekly_mean;
                let count = (mean + rng.random::<f64>()).floor() as usize;
                // Launch spikes this hour: (title, weight).
                let spikes: Vec<(usize, f64)> = (0..spec.titles)
                    .rev()
                    .take(launches)
                    .filter_map(|i| {
                        let release = titles[i].release?;
                        let mid = t0 + HOUR / 2;
                        if mid < release || !base[r][i].is_finite() {
                            return None;
                        }
                        let age = (mid - release) as f64 / DAY as f64;
                        let spike = boost[i] * tops[r] * 0.5f64.powf(age / half_life_days[i]);
                        Some((i, spike + now_pop[r][i].exp()))
                    })
                    .collect();
                let spike_total: f64 = spikes.iter().map(|s| s.1).sum();
                let base_total = tables[r].last().copied().unwrap_or(0.0);
                for _ in 0..count {
                    let u = rng.random::<f64>() * (base_total + spike_total);
                    let title = if u < base_total || spikes.is_empty() {
                        draw(&tables[r], u / base_total.max(f64::MIN_POSITIVE))
                    } else {
                        let mut acc = base_total;
                        spikes
                            .iter()
                            .find(|(_, w)| {
                                acc += w;
                                u < acc
                            })
                            .map_or(spikes[spikes.len() - 1].0, |s| s.0)
                    };
                    let site = site_cdf[r][draw(&site_tables[r], rng.random::<f64>())];
                    let t = &titles[title];
                    let length = (t.minutes * 60.0) as u32;
                    let watch = ((normal(&mut rng) * 0.9).exp() * 1800.0) as u32;
                    let bandwidth = (normal(&mut rng) * 0.8).exp() * 12_000.0;
                    let video = t.ladder_kbps[..t.ladder_kbps.len() - 1]
                        .iter()
                        .copied()
                        .filter(|&k| f64::from(k) <= 0.8 * bandwidth)
                        .max()
                        .unwrap_or(t.ladder_kbps[0]);
                    sessions.push(Session {
                        start: t0 + rng.random_range(0..HOUR),
                        title: title as u32,
                        site: site as u32,
                        watch_s: watch.clamp(60, length.max(60)),
                        kbps: video + AUDIO_KBPS,
                        profile: NO_PROFILE,
                    });
                }
            }
            sessions[first..].sort_by_key(|s| s.start);
        }
    }
    World {
        start: EPOCH,
        days: spec.days,
        regions,
        sites,
        titles,
        sessions,
    }
}

/// Give every session a viewer: `per_site` profiles per ISP site, each
/// liking two of `genres` genres (titles are spread over the genres at
/// random). A session of a title of genre g goes, with probability
/// `affinity`, to a profile of its site that likes g, else to any profile of
/// its site: with affinity near 1 the profiles have distinct tastes, at 0
/// they watch alike. The titles and times drawn by `generate` stay as they
/// are (a generator of its own, from `seed`).
pub fn assign_profiles(
    world: &mut World,
    per_site: usize,
    genres: usize,
    affinity: f64,
    seed: u64,
) {
    let per_site = per_site.max(1);
    let genres = genres.max(2);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x7072_6f66_696c_6573);
    let genre: Vec<usize> = (0..world.titles.len())
        .map(|_| rng.random_range(0..genres))
        .collect();
    // Per site and genre: the profiles liking it.
    let mut fans: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); genres]; world.sites.len()];
    for site in &mut fans {
        for p in 0..per_site as u32 {
            let a = rng.random_range(0..genres);
            let b = (a + 1 + rng.random_range(0..genres - 1)) % genres;
            site[a].push(p);
            site[b].push(p);
        }
    }
    for s in &mut world.sessions {
        let liking = &fans[s.site as usize][genre[s.title as usize]];
        s.profile = if !liking.is_empty() && rng.random::<f64>() < affinity {
            liking[rng.random_range(0..liking.len())]
        } else {
            rng.random_range(0..per_site as u32)
        };
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Write the trace to `path` and its companions (`.titles.csv`, `.sites.csv`,
/// `.regions.csv`).
pub fn write(world: &World, path: &Path) -> anyhow::Result<()> {
    let create = |p: &Path| -> anyhow::Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::new(std::fs::File::create(p).with_context(
            || format!("cannot create {}", p.display()),
        )?))
    };
    let mut out = create(path)?;
    let profiles = world.sessions.iter().any(|s| s.profile != NO_PROFILE);
    if profiles {
        writeln!(out, "{SESSIONS},profile")?;
    } else {
        writeln!(out, "{SESSIONS}")?;
    }
    for s in &world.sessions {
        let site = &world.sites[s.site as usize];
        write!(
            out,
            "{},{},{},{},{},{}",
            s.start,
            world.regions[site.region].name,
            site.isp,
            world.titles[s.title as usize].id,
            s.watch_s,
            s.kbps
        )?;
        match (profiles, s.profile) {
            (false, _) => writeln!(out)?,
            (true, NO_PROFILE) => writeln!(out, ",")?,
            (true, p) => writeln!(out, ",p{p}")?,
        }
    }
    out.flush()?;
    let mut out = create(&sibling(path, ".titles.csv"))?;
    writeln!(out, "title,minutes,ladder_kbps,release,audience,regions")?;
    for t in &world.titles {
        let ladder = t
            .ladder_kbps
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(";");
        // Shortest exact forms: a replayed trace is the generated one, bit for bit.
        let mut line = format!("{},{},{ladder},", t.id, t.minutes);
        if let Some(r) = t.release {
            let _ = write!(line, "{r}");
        }
        line.push(',');
        if t.release.is_some() {
            let _ = write!(line, "{}", t.audience);
        }
        let _ = write!(line, ",{}", t.regions.join(";"));
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let mut out = create(&sibling(path, ".sites.csv"))?;
    writeln!(out, "isp,region,appliances")?;
    for s in &world.sites {
        writeln!(
            out,
            "{},{},{}",
            s.isp, world.regions[s.region].name, s.appliances
        )?;
    }
    out.flush()?;
    let mut out = create(&sibling(path, ".regions.csv"))?;
    writeln!(out, "region,utc_offset_minutes")?;
    for r in &world.regions {
        writeln!(out, "{},{}", r.name, r.utc_offset_minutes)?;
    }
    out.flush()?;
    Ok(())
}

/// The sessions file's header (its optional last column is `profile`: `pN`,
/// the viewer's profile within its ISP's site).
const SESSIONS: &str = "start,region,isp,title,watch_s,kbps";

/// A file's first line.
fn header_of(path: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .next()
        .transpose()?
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Rows of a CSV file after its header, split on commas, each with its line
/// number; the header must be `header`.
fn rows(path: &Path, header: &str) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let first = lines
        .next()
        .transpose()?
        .with_context(|| format!("{}: empty, expected the header {header:?}", path.display()))?;
    if first.trim() != header {
        bail!(
            "{}: the header is {first:?}, expected {header:?}",
            path.display()
        );
    }
    let width = header.split(',').count();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(',').map(|f| f.trim().to_owned()).collect();
        if fields.len() != width {
            bail!(
                "{}:{}: {} fields, expected {width} ({header})",
                path.display(),
                n + 2,
                fields.len()
            );
        }
        out.push((n + 2, fields));
    }
    Ok(out)
}

fn field<T: std::str::FromStr>(path: &Path, line: usize, name: &str, v: &str) -> anyhow::Result<T> {
    v.parse().map_err(|_| {
        anyhow::anyhow!(
            "{}:{line}: {name} {v:?} is not a valid number",
            path.display()
        )
    })
}

/// Read a trace written by [`write`] (or converted from a CDN log to its
/// columns).
pub fn read(path: &Path) -> anyhow::Result<World> {
    let titles_path = sibling(path, ".titles.csv");
    let mut titles = Vec::new();
    let mut title_at = std::collections::HashMap::new();
    for (line, f) in rows(
        &titles_path,
        "title,minutes,ladder_kbps,release,audience,regions",
    )? {
        let p = &titles_path;
        let ladder = f[2]
            .split(';')
            .map(|k| field::<u32>(p, line, "ladder_kbps", k))
            .collect::<anyhow::Result<Vec<u32>>>()?;
        let minutes: f64 = field(p, line, "minutes", &f[1])?;
        if ladder.is_empty() || minutes.is_nan() || minutes <= 0.0 {
            bail!(
                "{}:{line}: a title needs minutes > 0 and a ladder",
                p.display()
            );
        }
        let release = if f[3].is_empty() {
            None
        } else {
            Some(field(p, line, "release", &f[3])?)
        };
        let audience = if f[4].is_empty() {
            0.0
        } else {
            field(p, line, "audience", &f[4])?
        };
        if title_at.insert(f[0].clone(), titles.len()).is_some() {
            bail!("{}:{line}: title {:?} twice", p.display(), f[0]);
        }
        titles.push(Title {
            id: f[0].clone(),
            minutes,
            ladder_kbps: ladder,
            release,
            audience,
            regions: f[5].split(';').map(str::to_owned).collect(),
        });
    }

    let mut regions: Vec<Region> = Vec::new();
    let regions_path = sibling(path, ".regions.csv");
    if regions_path.exists() {
        for (line, f) in rows(&regions_path, "region,utc_offset_minutes")? {
            regions.push(Region {
                name: f[0].clone(),
                utc_offset_minutes: field(&regions_path, line, "utc_offset_minutes", &f[1])?,
            });
        }
    }
    let mut sites: Vec<Site> = Vec::new();
    let sites_path = sibling(path, ".sites.csv");
    let region_of = |regions: &mut Vec<Region>, name: &str| -> usize {
        regions
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| {
                regions.push(Region {
                    name: name.to_owned(),
                    utc_offset_minutes: 0,
                });
                regions.len() - 1
            })
    };
    if sites_path.exists() {
        for (line, f) in rows(&sites_path, "isp,region,appliances")? {
            let appliances: usize = field(&sites_path, line, "appliances", &f[2])?;
            if appliances == 0 {
                bail!("{}:{line}: a site needs an appliance", sites_path.display());
            }
            let region = region_of(&mut regions, &f[1]);
            sites.push(Site {
                isp: f[0].clone(),
                region,
                appliances,
            });
        }
    }

    let mut sessions = Vec::new();
    let mut last = 0;
    let with_profiles = header_of(path)? == format!("{SESSIONS},profile");
    let header = if with_profiles {
        format!("{SESSIONS},profile")
    } else {
        SESSIONS.to_owned()
    };
    for (line, f) in rows(path, &header)? {
        let start: u64 = field(path, line, "start", &f[0])?;
        if start < last {
            bail!(
                "{}:{line}: sessions must be sorted by start",
                path.display()
            );
        }
        last = start;
        let Some(&title) = title_at.get(&f[3]) else {
            bail!(
                "{}:{line}: title {:?} is not in {}",
                path.display(),
                f[3],
                titles_path.display()
            );
        };
        let region = region_of(&mut regions, &f[1]);
        let site = match sites.iter().position(|s| s.isp == f[2]) {
            Some(s) if sites[s].region == region => s,
            Some(_) => bail!("{}:{line}: ISP {:?} in two regions", path.display(), f[2]),
            None => {
                sites.push(Site {
                    isp: f[2].clone(),
                    region,
                    appliances: 2,
                });
                sites.len() - 1
            }
        };
        sessions.push(Session {
            start,
            title: title as u32,
            site: site as u32,
            watch_s: field(path, line, "watch_s", &f[4])?,
            kbps: field(path, line, "kbps", &f[5])?,
            profile: match f.get(6).map(String::as_str) {
                None | Some("") => NO_PROFILE,
                Some(p) => {
                    let n = p.strip_prefix('p').unwrap_or(p);
                    field(path, line, "profile", n)?
                }
            },
        });
    }
    let (Some(first), Some(end)) = (sessions.first(), sessions.last()) else {
        bail!("{}: no sessions", path.display());
    };
    let start = first.start - first.start % DAY;
    let days = ((end.start - start) / DAY + 1) as usize;
    Ok(World {
        start,
        days,
        regions,
        sites,
        titles,
        sessions,
    })
}

#[cfg(test)]
mod tests;
