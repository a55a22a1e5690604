//! Fuzz harnesses for the protocol cores of oca, urlsign and steering.
//!
//! Each module has a `run(&[u8])` that feeds the bytes to one pure core and
//! asserts properties the code promises (not merely "does not panic"). The
//! libFuzzer targets in `fuzz_targets/` are one-line wrappers, and
//! `tests/replay.rs` runs every committed corpus and regression input through
//! the same functions on stable Rust, so a fixed crash stays fixed in CI.

#![forbid(unsafe_code)]

pub mod bgp;
pub mod control_bodies;
pub mod http_request;
pub mod manifest;
pub mod path;
pub mod token;

/// The harness names, as used for `fuzz_targets/`, `corpus/` and `regressions/`.
pub const TARGETS: [&str; 6] = [
    "http_request",
    "path",
    "token",
    "bgp",
    "manifest",
    "control_bodies",
];

/// Run the harness called `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "http_request" => http_request::run(data),
        "path" => path::run(data),
        "token" => token::run(data),
        "bgp" => bgp::run(data),
        "manifest" => manifest::run(data),
        "control_bodies" => control_bodies::run(data),
        other => panic!("no harness named {other:?}"),
    }
}
