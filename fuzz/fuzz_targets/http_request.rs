//! See `cdn_fuzz::http_request` for what this target feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdn_fuzz::http_request::run(data));
