//! `oca` binary: parse arguments, load config, start logging, run the server.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use oca::cli::{Cli, Command, load};
use oca::config::EXIT_BAD_CONFIG;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (overrides, check_only) = match cli.command {
        Some(Command::CheckConfig { overrides }) => (overrides, true),
        Some(Command::Sign {
            keys,
            kid,
            prefix,
            ttl,
            client,
            url,
        }) => {
            return print_or_fail(oca::tools::sign(
                &keys,
                kid.as_deref(),
                &prefix,
                ttl.into(),
                client,
                url.as_deref(),
            ));
        }
        Some(Command::Keygen {
            id,
            not_before,
            not_after,
        }) => {
            return print_or_fail(oca::tools::keygen(&id, not_before, not_after));
        }
        None => (cli.overrides, false),
    };
    let config = match load(&overrides) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("oca: bad config: {reason}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if check_only {
        // What the daemon would load at start must load now, too.
        let keys =
            oca::access::Access::new(config.access, config.token_keys.as_deref(), 0).map(drop);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) if !config.tls_listen.is_empty() => {
                oca::tls::Tls::load(c, k).map(drop)
            }
            _ => Ok(()),
        };
        if let Some(e) = keys
            .err()
            .map(|e| e.to_string())
            .or(tls.err().map(|e| e.to_string()))
        {
            eprintln!("oca: bad config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        println!("oca: config ok");
        return ExitCode::SUCCESS;
    }
    service::logging::init("OCA_LOG", config.log_format);
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
    let join = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut line = format!("oca listening http={}", join(server.http_addrs()));
    if !server.https_addrs().is_empty() {
        line += &format!(" https={}", join(server.https_addrs()));
    }
    line += &format!(" admin={}", server.admin_addr());
    if let Some(bgp) = server.bgp_addr() {
        line += &format!(" bgp={bgp}");
    }
    println!("{line}");
    let signals = oca::server::shutdown_signal(server.reloader());
    match server.run(signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oca: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_or_fail(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(s) => {
            println!("{}", s.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oca: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}
