//! `steering` binary: config, logging, runtime, `run`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use steering::cli::{BgpCommand, CatalogCommand, Cli, Command, load};
use steering::config::EXIT_BAD_CONFIG;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = cli.overrides;
    let mut recommender = false;
    let check_only = match cli.command {
        Some(Command::CheckConfig) => true,
        Some(Command::Recommender) => {
            recommender = true;
            false
        }
        Some(Command::Catalog {
            command: CatalogCommand::Import { dir },
        }) => return steering::cli::import(&dir, &overrides),
        Some(Command::Users { command }) => return steering::cli::users(command, &overrides),
        Some(Command::Appliances { command }) => {
            return steering::cli::appliances(command, &overrides);
        }
        Some(Command::Bgp {
            command: BgpCommand::ImportRib { file },
        }) => return steering::cli::import_rib(&file, &overrides),
        None => false,
    };
    // `--listen` is the recommender's own address when it runs.
    let loaded = if recommender {
        let listen = overrides.listen;
        let plain = steering::cli::Overrides {
            listen: None,
            ..overrides.clone()
        };
        load(&plain).map(|mut c| {
            if let Some(l) = listen {
                c.recommender.listen = l;
            }
            c
        })
    } else {
        load(&overrides)
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steering: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if check_only {
        println!("steering: config ok");
        return ExitCode::SUCCESS;
    }
    service::logging::init("STEERING_LOG", service::logging::LogFormat::Text);
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
    if recommender {
        let result: Result<(), String> = rt.block_on(async move {
            let signals = service::signals::Signals::install()
                .map_err(|e| format!("cannot install signal handlers: {e}"))?;
            let listen = config.recommender.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            println!("recommender listening http={addr}");
            service::notify::ready("training");
            let reload = std::sync::Arc::new(tokio::sync::Notify::new());
            steering::reco::service::run(config, listener, shutdown(signals, reload)).await
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("steering recommender: {e}");
                ExitCode::from(1)
            }
        };
    }
    let result: Result<(), String> = rt.block_on(async move {
        let signals = service::signals::Signals::install()
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let listen = config.listen;
        let state = steering::load_state(config)
            .await
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("steering listening http={addr}");
        // The runtime beats; the watchdog pings systemd while it does.
        let liveness = service::Liveness::new(vec!["runtime".into()]);
        tokio::spawn(std::sync::Arc::clone(&liveness).heartbeat(0));
        let status_of = std::sync::Arc::clone(&state);
        let _watchdog = service::Watchdog::start(liveness, move || status_of.status_line())
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        service::notify::ready(&state.status_line());
        let reload = std::sync::Arc::clone(&state.reload);
        steering::run(state, listener, shutdown(signals, reload))
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

/// Completes on SIGTERM or SIGINT; SIGHUP re-reads what other commands change
/// (the RIB after `bgp import-rib`, catalogue totals after `catalog import`).
async fn shutdown(
    mut signals: service::signals::Signals,
    reload: std::sync::Arc<tokio::sync::Notify>,
) {
    let name = signals
        .until_stop(|| {
            tracing::info!(signal = "SIGHUP", "reloading");
            service::notify::reloading();
            reload.notify_one();
        })
        .await;
    tracing::info!(signal = name, "shutting down");
    service::notify::stopping("shutting down");
}
