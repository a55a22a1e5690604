//! oca-pack: see `packager::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    packager::cli::run(packager::cli::Cli::parse())
}
