//! oca-lab: the whole stack on loopback with one command (`scripts/lab.sh`),
//! narrated, soaked (`--soak`) or in chaos (`--chaos`). See `oca-lab --help`.

mod chaos;
mod cli;
mod fill;
mod lab;
mod regions;
mod soak;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = cli.check() {
        eprintln!("oca-lab: {e}");
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("oca-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The lab runs its processes from plain threads; Ctrl-C or SIGTERM ends it
/// early, and every process it started is stopped on the way out.
fn run(args: &cli::Cli) -> Result<()> {
    lab::check_binaries()?;
    let measured = bench::results::Run::start();
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&stop))?;
    let lab_args = lab::LabArgs {
        duration: args.duration,
        viewers: args.viewers,
        fill_rate_bps: args.fill_rate_bps,
    };
    if args.json {
        lab::narrate_to_stderr();
    }
    let (kind, table, report, failures) = if args.soak {
        let r = soak::run(
            &soak::SoakArgs {
                lab: lab_args,
                sample_every: args.sample_every,
                samples: args.samples.clone(),
            },
            stop,
        )?;
        ("soak", r.table(), serde_json::to_value(&r)?, r.failures())
    } else if args.chaos {
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let r = chaos::run(
            &chaos::ChaosArgs {
                lab: lab_args,
                seed,
                pause: args.pause,
                down: args.down,
                health_interval: e2e::stack::HEALTH_INTERVAL,
            },
            stop,
        )?;
        ("chaos", r.table(), serde_json::to_value(&r)?, r.failures())
    } else if args.regions == 2 {
        let r = regions::run(&lab_args, stop)?;
        let table = r.table();
        ("failover", table, serde_json::to_value(&r)?, r.failures())
    } else {
        return lab::run(&lab_args, stop);
    };
    // Written whatever the verdict: a failed run is a measurement too.
    if let Some(path) = &args.results {
        measured.write(path, kind, args, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{table}");
    }
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Sets `stop` on Ctrl-C or SIGTERM (a service manager, `kill`, `timeout`).
fn watch_signals(stop: Arc<AtomicBool>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered here, before any process starts, so an early signal is not
    // lost (nor, for Ctrl-C, fatal with processes left running).
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
        })
    });
    Ok(())
}
