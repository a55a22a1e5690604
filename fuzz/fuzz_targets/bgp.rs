//! See `cdn_fuzz::bgp` for what this target feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdn_fuzz::bgp::run(data));
