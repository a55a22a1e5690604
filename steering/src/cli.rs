//! The command line: serving options and the offline commands (`check-config`,
//! `catalog import`, `users ...`, `appliances ...`) that work on the store
//! directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control_client::wire::Tier;

use crate::config::{Config, EXIT_BAD_CONFIG};
use crate::fleet::store::{EnrolmentRow, Placement, Revoked};
use crate::store::Store;
use crate::viewers::store::UserRow;

/// Exit code for bad input data (sysexits EX_DATAERR).
pub const EXIT_BAD_DATA: u8 = 65;

#[derive(Parser)]
#[command(
    name = "steering",
    version,
    about = "The thin central service of the edge-delivery stack"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate the configuration and exit (0 if good, 64 with the reason if not).
    CheckConfig,
    /// Manage the catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// BGP data for steering.
    Bgp {
        #[command(subcommand)]
        command: BgpCommand,
    },
    /// Manage viewer accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Enrol and revoke appliances.
    Appliances {
        #[command(subcommand)]
        command: AppliancesCommand,
    },
    /// Run the recommendation service (`[recommender]`; `--listen` overrides
    /// its `listen`): trains on the store's play history and answers home
    /// rows for `[recommendations] url`.
    Recommender,
}

#[derive(Subcommand)]
pub enum AppliancesCommand {
    /// Issue a one-time enrolment token (printed once on stdout; only its
    /// hash is stored). A new appliance presents it with `[control]
    /// enrolment_token`, chooses its own credential and joins the registry
    /// without a config change here.
    Enroll {
        #[arg(long)]
        site: String,
        /// `embedded` (inside an ISP) or `ixp`.
        #[arg(long)]
        tier: String,
        /// Bind the region too (default: the one the appliance states).
        #[arg(long)]
        region: Option<String>,
        /// The id the appliance must enrol as (default: its own
        /// `appliance_id`); needed to re-enrol a revoked appliance's id.
        #[arg(long)]
        id: Option<String>,
        /// `LAT,LON` in degrees, for distance-based steering.
        #[arg(long)]
        location: Option<String>,
        /// The appliance's off-peak window, `HH:MM-HH:MM` local time.
        #[arg(long)]
        fill_window: Option<String>,
        /// Its local time's offset from UTC, `+HH:MM` or `-HH:MM`.
        #[arg(long)]
        utc_offset: Option<String>,
        /// How long the token works (at most 7 days).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        valid: Duration,
    },
    /// Revoke an appliance's credential: every steering instance refuses it
    /// and stops steering to it within one `instance.sync_interval`.
    Revoke { id: String },
    /// List appliances (declared or enrolled, revoked ones marked) and
    /// enrolment tokens (by hash prefix).
    List,
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Import packaged titles (DIR/titles/<id>/{title.toml,master.m3u8,...}):
    /// hashes every object; re-importing replaces what an earlier import recorded.
    Import { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum BgpCommand {
    /// Import a prefix → origin-ASN table from an MRT RIB dump (TABLE_DUMP_V2, as
    /// route collectors publish): clients outside every embedded appliance's
    /// prefixes are mapped by origin ASN (`[[asn]]` config) to a region.
    /// Replaces the previous import; a running steering picks it up within a minute.
    ImportRib { file: PathBuf },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create an account.
    Add {
        id: String,
        #[arg(long)]
        plan: String,
        #[arg(long)]
        country: String,
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "active")]
        subscription: String,
        /// A profile, as ID or ID:NAME (repeatable; default one profile "main").
        #[arg(long = "profile")]
        profiles: Vec<String>,
    },
    /// Change an account's plan, subscription or home.
    Set {
        id: String,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        subscription: Option<String>,
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// Add a profile to an account.
    AddProfile {
        id: String,
        profile: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Issue a viewer token (printed once; only its hash is stored).
    Token {
        id: String,
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// List accounts.
    List,
    /// Create COUNT accounts PREFIX-0 … PREFIX-(COUNT-1), each with a main
    /// profile and a viewer token, the tokens written one a line to FILE
    /// (mode 0600): accounts for a load test (`oca-bench plays --tokens`) or
    /// a staging environment. Existing ids are refused before anything is
    /// written.
    Seed {
        #[arg(long)]
        count: u32,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        plan: String,
        #[arg(long, default_value = "NL")]
        country: String,
        #[arg(long)]
        region: String,
        /// Where the tokens go.
        #[arg(long, value_name = "FILE")]
        tokens: std::path::PathBuf,
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

/// Accepted before or after any subcommand.
#[derive(clap::Args, Clone, Default)]
pub struct Overrides {
    /// TOML configuration file (without one, every setting has its default)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Address the API listens on, e.g. 127.0.0.1:7000 (overrides `listen`)
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<SocketAddr>,
    /// The store: a SQLite file or a postgres:// URL (overrides `database`)
    #[arg(long, value_name = "FILE", global = true)]
    pub database: Option<String>,
}

pub fn load(o: &Overrides) -> Result<Config, String> {
    let mut c = match &o.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(l) = o.listen {
        c.listen = l;
    }
    if let Some(d) = &o.database {
        c.database = d.clone();
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Run an offline command on the store: a summary on stdout, or the reason on
/// stderr with exit 64 (config), 65 (bad input) or 1 (store).
fn offline(
    overrides: &Overrides,
    what: &str,
    f: impl AsyncFnOnce(&Config, &dyn Store) -> Result<String, (u8, String)>,
) -> ExitCode {
    let config = match load(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steering: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("steering: {what} failed: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let store = crate::store::open(&config.database, config.database_connections)
            .await
            .map_err(|e| (1, e.to_string()))?;
        f(&config, store.as_ref()).await
    });
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("steering: {what} failed: {e}");
            ExitCode::from(code)
        }
    }
}

pub fn import(dir: &Path, overrides: &Overrides) -> ExitCode {
    offline(overrides, "import", async |config, store| {
        let titles = crate::catalog::scan(dir).map_err(|e| (EXIT_BAD_DATA, e.to_string()))?;
        // Every protected title's key first: a title is not imported without
        // the key its licences need.
        let mut sealed = Vec::with_capacity(titles.len());
        let mut kek = None;
        for t in &titles {
            let bad = |e: crate::drm::DrmError| (EXIT_BAD_DATA, e.to_string());
            let Some(p) = crate::drm::protection(&dir.join("titles").join(&t.id)).map_err(bad)?
            else {
                sealed.push(Vec::new());
                continue;
            };
            if kek.is_none() {
                let path = config.drm.key_file.as_deref().ok_or_else(|| {
                    (
                        EXIT_BAD_DATA,
                        format!(
                            "title {} is encrypted: set drm.key_file to store its content key",
                            t.id
                        ),
                    )
                })?;
                kek = Some(crate::drm::Kek::load(path).map_err(bad)?);
            }
            let key = crate::drm::packaged_key(dir, &t.id, &p).map_err(bad)?;
            let k = kek.as_ref().expect("loaded above");
            sealed.push(vec![(p.kid.to_lowercase(), k.seal(&t.id, &key))]);
        }
        let now = crate::unix_now();
        for (t, keys) in titles.iter().zip(&sealed) {
            store.put_title(t).await.map_err(|e| (1, e.to_string()))?;
            store
                .put_content_keys(&t.id, keys, now)
                .await
                .map_err(|e| (1, e.to_string()))?;
        }
        let (titles, renditions, objects, bytes) = store
            .catalog_counts()
            .await
            .map_err(|e| (1, e.to_string()))?;
        Ok(format!(
            "catalog: {titles} titles, {renditions} renditions, {objects} objects, {bytes} bytes"
        ))
    })
}

pub fn import_rib(file: &Path, overrides: &Overrides) -> ExitCode {
    offline(overrides, "RIB import", async |config, store| {
        let rib = crate::fleet::bgp::read_rib(file).map_err(|e| (EXIT_BAD_DATA, e.to_string()))?;
        let rows: Vec<(String, u32)> = rib.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        store.put_rib(&rows).await.map_err(|e| (1, e.to_string()))?;
        let v4 = rib
            .iter()
            .filter(|(p, _)| matches!(p, ipnet::IpNet::V4(_)))
            .count();
        let origins: std::collections::HashSet<u32> = rib.iter().map(|(_, a)| *a).collect();
        let mapped = rib
            .iter()
            .filter(|(_, a)| config.asns.iter().any(|c| c.number == *a))
            .count();
        Ok(format!(
            "rib: {} prefixes (IPv4 {v4}, IPv6 {}) from {} origin ASNs; {mapped} in a configured region",
            rib.len(),
            rib.len() - v4,
            origins.len()
        ))
    })
}

const SUBSCRIPTIONS: [&str; 3] = ["active", "suspended", "cancelled"];

fn check_user(config: &Config, u: &UserRow) -> Result<(), (u8, String)> {
    let bad = |m: String| Err((EXIT_BAD_DATA, m));
    if !crate::config::valid_id(&u.id) {
        return bad("user ids use 1-64 of A-Z a-z 0-9 - _ .".into());
    }
    if !config.plans.iter().any(|p| p.name == u.plan) {
        let offered: Vec<&str> = config.plans.iter().map(|p| p.name.as_str()).collect();
        return bad(format!(
            "no plan {:?}; offered: {}",
            u.plan,
            offered.join(", ")
        ));
    }
    if !SUBSCRIPTIONS.contains(&u.subscription.as_str()) {
        return bad(format!(
            "subscription must be one of {}",
            SUBSCRIPTIONS.join(", ")
        ));
    }
    if u.country.is_empty() || u.region.is_empty() {
        return bad("country and region must not be empty".into());
    }
    Ok(())
}

/// Run `work` with at most `limit` in flight, answers in order.
async fn run_bounded<T>(
    work: impl Iterator<Item = impl std::future::Future<Output = T>>,
    limit: usize,
) -> Vec<T> {
    use futures_util::StreamExt;
    futures_util::stream::iter(work)
        .buffered(limit)
        .collect()
        .await
}

/// Write a file only its owner can read (tokens are credentials).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn profile_arg(p: &str) -> Result<(String, String), (u8, String)> {
    let (id, name) = p.split_once(':').unwrap_or((p, p));
    if !crate::config::valid_id(id) || name.is_empty() {
        return Err((
            EXIT_BAD_DATA,
            format!("bad profile {p:?}: use ID or ID:NAME"),
        ));
    }
    Ok((id.to_owned(), name.to_owned()))
}

pub fn users(command: UsersCommand, overrides: &Overrides) -> ExitCode {
    let store_err = |e: crate::store::StoreError| (1, e.to_string());
    offline(overrides, "users", async move |config, store| {
        let now = crate::unix_now();
        let existing = async |id: &str| -> Result<UserRow, (u8, String)> {
            store
                .user(id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| (EXIT_BAD_DATA, format!("no user {id:?}")))
        };
        match command {
            UsersCommand::Add {
                id,
                plan,
                country,
                region,
                subscription,
                profiles,
            } => {
                let u = UserRow {
                    id,
                    plan,
                    subscription,
                    country,
                    region,
                };
                check_user(config, &u)?;
                if store.user(&u.id).await.map_err(store_err)?.is_some() {
                    return Err((EXIT_BAD_DATA, format!("user {:?} exists", u.id)));
                }
                let mut ps = profiles
                    .iter()
                    .map(|p| profile_arg(p))
                    .collect::<Result<Vec<_>, _>>()?;
                if ps.is_empty() {
                    ps.push(("main".into(), "Main".into()));
                }
                store.add_user(&u, &ps, now).await.map_err(store_err)?;
                Ok(format!("user {} added with {} profile(s)", u.id, ps.len()))
            }
            UsersCommand::Set {
                id,
                plan,
                subscription,
                country,
                region,
            } => {
                let mut u = existing(&id).await?;
                u.plan = plan.unwrap_or(u.plan);
                u.subscription = subscription.unwrap_or(u.subscription);
                u.country = country.unwrap_or(u.country);
                u.region = region.unwrap_or(u.region);
                check_user(config, &u)?;
                store.update_user(&u).await.map_err(store_err)?;
                Ok(format!(
                    "user {}: plan {}, subscription {}, {}/{}",
                    u.id, u.plan, u.subscription, u.country, u.region
                ))
            }
            UsersCommand::AddProfile { id, profile, name } => {
                existing(&id).await?;
                let (pid, pname) = profile_arg(&match name {
                    Some(n) => format!("{profile}:{n}"),
                    None => profile,
                })?;
                if store
                    .profiles(&id)
                    .await
                    .map_err(store_err)?
                    .iter()
                    .any(|(p, _)| *p == pid)
                {
                    return Err((EXIT_BAD_DATA, format!("profile {pid:?} exists")));
                }
                store
                    .add_profile(&id, &pid, &pname)
                    .await
                    .map_err(store_err)?;
                Ok(format!("profile {pid} added to {id}"))
            }
            UsersCommand::Token { id, ttl } => {
                existing(&id).await?;
                let (token, hash) = crate::viewers::accounts::new_token();
                store
                    .add_viewer_token(&hash, &id, now, now.saturating_add(ttl.as_secs()))
                    .await
                    .map_err(store_err)?;
                Ok(token)
            }
            UsersCommand::Seed {
                count,
                prefix,
                plan,
                country,
                region,
                tokens,
                ttl,
            } => {
                let users: Vec<UserRow> = (0..count)
                    .map(|i| UserRow {
                        id: format!("{prefix}-{i}"),
                        plan: plan.clone(),
                        subscription: "active".into(),
                        country: country.clone(),
                        region: region.clone(),
                    })
                    .collect();
                for u in &users {
                    check_user(config, u)?;
                    if store.user(&u.id).await.map_err(store_err)?.is_some() {
                        return Err((EXIT_BAD_DATA, format!("user {:?} exists", u.id)));
                    }
                }
                let mut lines = String::new();
                // Concurrently: each is its own transaction, and the store
                // commits them in groups.
                let work = users.iter().map(|u| {
                    let (token, hash) = crate::viewers::accounts::new_token();
                    lines.push_str(&token);
                    lines.push('\n');
                    async move {
                        store
                            .add_user(u, &[("main".into(), "Main".into())], now)
                            .await?;
                        store
                            .add_viewer_token(&hash, &u.id, now, now.saturating_add(ttl.as_secs()))
                            .await
                    }
                });
                let results = run_bounded(work, 64).await;
                if let Some(e) = results.into_iter().find_map(Result::err) {
                    return Err(store_err(e));
                }
                write_private(&tokens, lines.as_bytes())
                    .map_err(|e| (1, format!("{}: {e}", tokens.display())))?;
                Ok(format!(
                    "{count} users {prefix}-0..{prefix}-{} added; tokens in {}",
                    count.saturating_sub(1),
                    tokens.display()
                ))
            }
            UsersCommand::List => {
                let mut out = String::new();
                for u in store.users().await.map_err(store_err)? {
                    let profiles: Vec<String> = store
                        .profiles(&u.id)
                        .await
                        .map_err(store_err)?
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect();
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}/{}\t{}\n",
                        u.id,
                        u.plan,
                        u.subscription,
                        u.country,
                        u.region,
                        profiles.join(",")
                    ));
                }
                Ok(out.trim_end().to_owned())
            }
        }
    })
}

/// Parse `--tier` for an enrolment: appliances are embedded or at an IXP.
fn tier_arg(t: &str) -> Result<Tier, (u8, String)> {
    match t {
        "embedded" => Ok(Tier::Embedded),
        "ixp" => Ok(Tier::Ixp),
        _ => Err((EXIT_BAD_DATA, format!("bad tier {t:?}: embedded or ixp"))),
    }
}

fn location_arg(l: &str) -> Result<[f64; 2], (u8, String)> {
    let bad = || {
        (
            EXIT_BAD_DATA,
            format!("bad location {l:?}: LAT,LON in degrees"),
        )
    };
    let (lat, lon) = l.split_once(',').ok_or_else(bad)?;
    let (lat, lon): (f64, f64) = (
        lat.trim().parse().map_err(|_| bad())?,
        lon.trim().parse().map_err(|_| bad())?,
    );
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok([lat, lon])
}

pub fn appliances(command: AppliancesCommand, overrides: &Overrides) -> ExitCode {
    let store_err = |e: crate::store::StoreError| (1, e.to_string());
    let bad = |m: String| (EXIT_BAD_DATA, m);
    offline(overrides, "appliances", async move |_config, store| {
        let now = crate::unix_now();
        match command {
            AppliancesCommand::Enroll {
                site,
                tier,
                region,
                id,
                location,
                fill_window,
                utc_offset,
                valid,
            } => {
                let tier = tier_arg(&tier)?;
                if site.is_empty() || region.as_deref() == Some("") {
                    return Err(bad("site and region must not be empty".into()));
                }
                if let Some(id) = &id
                    && !crate::config::valid_id(id)
                {
                    return Err(bad("--id: use 1-64 of A-Z a-z 0-9 - _ .".into()));
                }
                if let Some(w) = &fill_window {
                    crate::fleet::fillplan::parse_window(w)
                        .map_err(|e| bad(format!("--fill-window: {e}")))?;
                }
                if let Some(o) = &utc_offset {
                    crate::fleet::fillplan::parse_utc_offset(o)
                        .map_err(|e| bad(format!("--utc-offset: {e}")))?;
                }
                if valid.is_zero() || valid > Duration::from_secs(7 * 86_400) {
                    return Err(bad("--valid: more than 0 and at most 7 days".into()));
                }
                let placement = Placement {
                    tier,
                    site,
                    region,
                    location: location.as_deref().map(location_arg).transpose()?,
                    fill_window,
                    utc_offset,
                };
                let token = crate::fleet::enrol::new_token();
                let row = EnrolmentRow {
                    token_sha256: crate::sha256_hex(&token),
                    appliance: id,
                    placement,
                    created: now,
                    expires: now + valid.as_secs(),
                    used: None,
                };
                store.add_enrolment(&row).await.map_err(store_err)?;
                eprintln!(
                    "enrolment token for {} at site {} ({:?}), valid {} (until unix {}); shown once:",
                    row.appliance.as_deref().unwrap_or("a new appliance"),
                    row.placement.site,
                    row.placement.tier,
                    humantime::format_duration(valid),
                    row.expires
                );
                Ok(token)
            }
            AppliancesCommand::Revoke { id } => {
                match store.revoke_appliance(&id, now).await.map_err(store_err)? {
                    Revoked::Now => Ok(format!(
                        "appliance {id} revoked; instances drop it within one sync interval"
                    )),
                    Revoked::Already => Ok(format!("appliance {id} was revoked already")),
                    Revoked::NoSuchAppliance => Err(bad(format!("no appliance {id:?}"))),
                }
            }
            AppliancesCommand::List => {
                let mut out = String::new();
                for a in store.appliances().await.map_err(store_err)? {
                    let state = if a.revoked { "revoked" } else { "active" };
                    let how = if a.bound.is_some() {
                        "enrolled"
                    } else {
                        "declared"
                    };
                    out.push_str(&format!(
                        "appliance\t{}\t{state}\t{how}\t{:?}\t{}\t{}\n",
                        a.id, a.info.tier, a.info.site, a.info.region
                    ));
                }
                for e in store.enrolments().await.map_err(store_err)? {
                    let state = match &e.used {
                        Some(u) => format!("used-by={}", u.by),
                        None if now >= e.expires => "expired".into(),
                        None => format!("open-for={}s", e.expires - now),
                    };
                    out.push_str(&format!(
                        "token\t{}\t{state}\t{}\t{:?}\t{}\n",
                        &e.token_sha256[..12],
                        e.appliance.as_deref().unwrap_or("-"),
                        e.placement.tier,
                        e.placement.site
                    ));
                }
                Ok(out.trim_end().to_owned())
            }
        }
    })
}
