//! oca-bench: a load generator for HTTP segment servers, side-by-side
//! comparisons of two of them, and simulated viewers against a steering
//! service. See `oca-bench --help`.

mod abr;
mod agent;
mod catalogue;
mod chaos;
mod chunked;
mod cli;
mod client;
mod compare;
mod cpu;
mod hls;
mod hostile;
mod http1;
mod lab;
mod play_report;
mod play_stats;
mod playback;
mod players;
mod report;
mod results;
mod run;
mod schedule;
mod session;
mod soak;
mod stats;
mod target;
mod tls;
mod url;
mod verify;
mod viewer;
mod zipf;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command, SegmentsArgs};
use report::Report;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("oca-bench: {}", cli::one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Segments(args) => segments(args),
        Command::Compare(args) => compare::compare(args).and_then(|c| {
            if args.workload.json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                print!("{}", c.table());
            }
            Ok(())
        }),
        Command::Lab(args) => lab(args),
        Command::Hostile(args) => hostile(args),
        Command::Players(args) => players::players(args).and_then(|r| {
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", r.table());
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("oca-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The lab runs its processes from plain threads; Ctrl-C or SIGTERM ends it
/// early, and every process it started is stopped on the way out.
fn lab(args: &cli::LabCliArgs) -> Result<()> {
    use tokio::signal::unix::SignalKind;
    let run = results::Run::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            // SIGTERM (a service manager, `kill`, `timeout`) ends it as Ctrl-C does.
            let Ok(mut term) = tokio::signal::unix::signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    });
    if args.viewers == 0 || args.viewers > 16 {
        anyhow::bail!("--viewers must be between 1 and 16");
    }
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
    } else {
        return lab::run(&lab_args, stop);
    };
    // Written whatever the verdict: a failed run is a measurement too.
    if let Some(path) = &args.results {
        run.write(path, kind, args, &report)?;
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

fn hostile(a: &cli::HostileCliArgs) -> Result<()> {
    let run = results::Run::start();
    let report = hostile::run(&hostile::HostileArgs {
        url: a.url.clone(),
        big_url: a.big_url.clone(),
        server_pid: a.server_pid,
        calm: a.calm,
        attack: a.attack,
        slowloris: a.slowloris,
        flood: a.flood,
        stalled: a.stalled,
        pipelines: a.pipelines,
        pipeline_depth: a.pipeline_depth,
        resets_per_s: a.resets_per_s,
    })?;
    if let Some(path) = &a.results {
        run.write(path, "hostile", a, &report)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn segments(args: &SegmentsArgs) -> Result<()> {
    let w = &args.workload;
    let catalogue = w.load_catalogue()?;
    cpu::check_pids(&args.server_pids)?;
    let plan = w.plan(&args.target, &catalogue)?;
    let outcome = run::run(&plan, &w.control(&args.server_pids))?;
    let report = Report::new(
        w.setup(&args.target, &catalogue, &args.server_pids),
        &outcome,
    );
    if w.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
