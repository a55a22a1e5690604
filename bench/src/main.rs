//! oca-bench: a load generator for HTTP segment servers, side-by-side
//! comparisons of two of them, and simulated viewers against a steering
//! service. See `oca-bench --help`.

mod abr;
mod agent;
mod appliances;
mod catalogue;
mod chunked;
mod cli;
mod client;
mod compare;
mod conn;
mod cpu;
mod fleetsim;
mod hls;
mod hostile;
mod http1;
mod play_beats;
mod play_report;
mod play_stats;
mod playback;
mod players;
mod plays;
mod reco;
mod report;
mod run;
mod sampler;
mod schedule;
mod session;
mod stats;
mod target;
mod tls;
mod url;
mod verify;
mod viewer;
mod zipf;

use std::process::ExitCode;

use anyhow::Result;
use bench::results;
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
        Command::Hostile(args) => hostile(args),
        Command::Appliances(args) => {
            let run = results::Run::start();
            appliances::appliances(args).and_then(|r| {
                if let Some(path) = &args.results {
                    run.write(path, "appliances", args, &r)?;
                }
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    print!("{}", r.table());
                }
                Ok(())
            })
        }
        Command::Plays(args) => {
            let run = results::Run::start();
            plays::plays(args).and_then(|r| {
                if let Some(path) = &args.results {
                    run.write(path, "plays", args, &r)?;
                }
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    print!("{}", r.table());
                }
                Ok(())
            })
        }
        Command::FleetSim(args) => {
            let run = results::Run::start();
            fleetsim::fleet_sim(args).and_then(|r| {
                if let Some(path) = &args.results {
                    run.write(path, "fleet-sim", args, &r)?;
                }
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    print!("{}", r.table());
                }
                Ok(())
            })
        }
        Command::Reco(args) => {
            let run = results::Run::start();
            reco::reco(args).and_then(|r| {
                if let Some(path) = &args.results {
                    run.write(path, "reco", args, &r)?;
                }
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    print!("{}", r.table());
                }
                Ok(())
            })
        }
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
