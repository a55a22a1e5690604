//! `bench-ladders`: per content class, the per-title ladder against fixed ladders.

use std::path::PathBuf;

use crate::cli::Common;
use crate::tool::PackError;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Where to write the figures (JSON).
    pub out: PathBuf,
}

pub fn run(_c: &Common, _args: &BenchArgs) -> Result<(), PackError> {
    Err(PackError::Usage("not yet".into()))
}
