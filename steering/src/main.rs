//! `steering` binary: config, logging, runtime, `run`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steering::config::{Config, EXIT_BAD_CONFIG};

#[derive(Parser)]
#[command(
    name = "steering",
    version,
    about = "The thin central service of the edge-delivery stack"
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
    /// Manage the catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Import packaged titles (DIR/titles/<id>/{title.toml,master.m3u8,...}):
    /// hashes every object; re-importing replaces what an earlier import recorded.
    Import {
        dir: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(clap::Args, Clone, Default)]
struct Overrides {
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[arg(long, value_name = "FILE")]
    database: Option<PathBuf>,
}

fn load(o: &Overrides) -> Result<Config, String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (overrides, check_only) = match cli.command {
        Some(Command::CheckConfig { overrides }) => (overrides, true),
        Some(Command::Catalog {
            command: CatalogCommand::Import { dir, overrides },
        }) => return import(&dir, &overrides),
        None => (cli.overrides, false),
    };
    let config = match load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steering: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    if check_only {
        println!("steering: config ok");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEERING_LOG")
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steering: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: Result<(), String> = rt.block_on(async move {
        let listen = config.listen;
        let state = steering::load_state(config).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("steering listening http={addr}");
        steering::run(state, listener, shutdown())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steering: {e}");
            ExitCode::from(1)
        }
    }
}

fn import(dir: &std::path::Path, overrides: &Overrides) -> ExitCode {
    let config = match load(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steering: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let result = (|| -> Result<String, String> {
        let titles = steering::catalog::scan(dir).map_err(|e| e.to_string())?;
        let store = steering::store::Store::open(&config.database).map_err(|e| e.to_string())?;
        for t in &titles {
            store.put_title(t).map_err(|e| e.to_string())?;
        }
        let (titles, renditions, objects, bytes) =
            store.catalog_counts().map_err(|e| e.to_string())?;
        Ok(format!(
            "catalog: {titles} titles, {renditions} renditions, {objects} objects, {bytes} bytes"
        ))
    })();
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("steering: import failed: {e}");
            ExitCode::from(65)
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("shutting down");
}
