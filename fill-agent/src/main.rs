//! `fill-agent` binary: config, logging, runtime, `run`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fill_agent::Clock;
use fill_agent::config::{Config, EXIT_BAD_CONFIG};

#[derive(Parser)]
#[command(
    name = "fill-agent",
    version,
    about = "Fills an appliance's disks from its fill plan, off-peak"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (keys in the README's fill-agent reference;
    /// `stores` and `[control]` have no defaults, so one is needed).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Run on a simulated clock starting at this unix time, so fill windows
    /// can be exercised at any hour (labs and tests).
    #[arg(long, value_name = "UNIX")]
    clock_start: Option<f64>,
    /// Speed of the simulated clock, in seconds per real second (with
    /// --clock-start).
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        requires = "clock_start"
    )]
    clock_speed: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit (0 if good, 64 with the reason if not).
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli
        .config
        .as_deref()
        .map(Config::from_file)
        .unwrap_or_else(|| Ok(Config::default()))
        .and_then(|c| c.validate().map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fill-agent: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("fill-agent: config ok");
        return ExitCode::SUCCESS;
    }
    service::logging::init("FILL_AGENT_LOG", service::logging::LogFormat::Text);
    let clock = match cli.clock_start {
        Some(start) if cli.clock_speed > 0.0 => Clock::starting_at(start, cli.clock_speed),
        Some(_) => {
            eprintln!("fill-agent: --clock-speed must be positive");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        None => Clock::real(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fill-agent: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let run = async {
        let signals = service::signals::Signals::install()?;
        fill_agent::run(config, clock, shutdown(signals, wake.clone()), wake.clone()).await?;
        anyhow::Ok(())
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fill-agent: {e}");
            ExitCode::from(1)
        }
    }
}

/// Completes on SIGTERM or SIGINT; SIGHUP starts a pass at once (a new plan
/// or a disk swapped in need not wait for the poll interval).
async fn shutdown(
    mut signals: service::signals::Signals,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    let name = signals
        .until_stop(|| {
            tracing::info!(signal = "SIGHUP", "starting a pass now");
            wake.notify_one();
        })
        .await;
    tracing::info!(signal = name, "shutdown requested");
}
