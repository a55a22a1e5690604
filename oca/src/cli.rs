//! Command-line interface: options, subcommands, and how they override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{AccessMode, Config};

#[derive(Parser)]
#[command(
    name = "oca",
    version,
    about = "Edge appliance daemon: serves video objects from local disks"
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
    CheckConfig {
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Print a signed-URL token (or URL) for a path prefix.
    Sign {
        /// Key file (TOML, mode 0600).
        #[arg(long, value_name = "FILE")]
        keys: PathBuf,
        /// Key id to sign with (default: the newest key valid now).
        #[arg(long)]
        kid: Option<String>,
        /// Path prefix the token covers, e.g. /titles/t1/.
        #[arg(long)]
        prefix: String,
        /// Lifetime, e.g. 6h.
        #[arg(long, default_value = "6h")]
        ttl: humantime::Duration,
        /// Bind the token to a client prefix, e.g. 203.0.113.0/24.
        #[arg(long)]
        client: Option<urlsign::ClientPrefix>,
        /// Print a full URL under this base (e.g. http://oca.example:8080).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print a new key entry (random secret) to append to a key file.
    Keygen {
        #[arg(long)]
        id: String,
        /// Unix seconds from which the key is valid.
        #[arg(long)]
        not_before: Option<u64>,
        /// Unix seconds after which the key is retired.
        #[arg(long)]
        not_after: Option<u64>,
    },
}

#[derive(clap::Args, Clone, Default)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve objects on (repeatable; replaces `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Address to serve objects on over HTTPS (repeatable; replaces `tls_listen`).
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain (replaces `tls_cert`).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (replaces `tls_key`).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Address of the admin listener (replaces `admin_listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Disk root (repeatable, one per disk; replaces `stores`).
    #[arg(long, value_name = "DIR")]
    pub store: Vec<PathBuf>,
    /// Worker threads (replaces `workers`; 0 = one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Token key file (replaces `token_keys`).
    #[arg(long, value_name = "FILE")]
    pub token_keys: Option<PathBuf>,
    /// `token` or `open` (replaces `access`).
    #[arg(long, value_name = "MODE", value_parser = ["token", "open"])]
    pub access: Option<String>,
}

/// The configuration: file (if any), then command-line overrides, validated.
pub fn load(o: &Overrides) -> Result<Config, String> {
    let mut c = match &o.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !o.listen.is_empty() {
        c.listen = o.listen.clone();
    }
    if !o.tls_listen.is_empty() {
        c.tls_listen = o.tls_listen.clone();
    }
    if let Some(p) = &o.tls_cert {
        c.tls_cert = Some(p.clone());
    }
    if let Some(p) = &o.tls_key {
        c.tls_key = Some(p.clone());
    }
    if let Some(a) = o.admin_listen {
        c.admin_listen = a;
    }
    if !o.store.is_empty() {
        c.stores = o.store.clone();
    }
    if let Some(w) = o.workers {
        c.workers = w;
    }
    if let Some(k) = &o.token_keys {
        c.token_keys = Some(k.clone());
    }
    match o.access.as_deref() {
        Some("open") => c.access = AccessMode::Open,
        Some(_) => c.access = AccessMode::Token,
        None => {}
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}
