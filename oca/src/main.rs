//! `oca` binary: parse arguments, load config, start logging, run the server.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oca::config::{Config, EXIT_BAD_CONFIG, LogFormat};

#[derive(Parser)]
#[command(
    name = "oca",
    version,
    about = "Edge appliance daemon: serves video objects from local disks"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit (0 if good, 64 with the reason if not).
    CheckConfig {
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(clap::Args, Clone, Default)]
struct Overrides {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve objects on (repeatable; replaces `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Address of the admin listener (replaces `admin_listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Disk root (repeatable, one per disk; replaces `stores`).
    #[arg(long, value_name = "DIR")]
    store: Vec<PathBuf>,
    /// Worker threads (replaces `workers`; 0 = one per CPU).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn load(o: &Overrides) -> Result<Config, String> {
    let mut c = match &o.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !o.listen.is_empty() {
        c.listen = o.listen.clone();
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
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (overrides, check_only) = match cli.command {
        Some(Command::CheckConfig { overrides }) => (overrides, true),
        None => (cli.overrides, false),
    };
    let config = match load(&overrides) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("oca: bad config: {reason}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    if check_only {
        println!("oca: config ok");
        return ExitCode::SUCCESS;
    }
    init_tracing(config.log_format);
    let server = match oca::Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("oca: {e}");
            return ExitCode::from(1);
        }
    };
    // One line on stdout with the real addresses (ports may have been 0), for
    // scripts and tests; logs go to stderr.
    let http: Vec<String> = server.http_addrs().iter().map(|a| a.to_string()).collect();
    println!(
        "oca listening http={} admin={}",
        http.join(","),
        server.admin_addr()
    );
    match server.run(oca::server::shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oca: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
