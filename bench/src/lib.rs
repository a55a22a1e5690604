//! The part of oca-bench other tools reuse: `--results` files (a report with
//! the command, options, dates and machine that produced it), written the
//! same way by `oca-bench hostile` and `oca-lab --soak/--chaos` so one
//! renderer (bench/figures) reads them all. Everything else is the
//! `oca-bench` binary's own.

pub mod results;
