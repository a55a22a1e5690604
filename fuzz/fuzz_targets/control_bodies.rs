//! See `cdn_fuzz::control_bodies` for what this target feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdn_fuzz::control_bodies::run(data));
