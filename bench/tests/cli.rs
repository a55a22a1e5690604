//! Bad input ends as one line on stderr and a non-zero exit, never a panic.

mod support;

use support::{bench, keys_file};

/// Runs with `args` and returns the single stderr line, asserting failure.
fn fails(args: &[&str]) -> String {
    let out = bench(args);
    assert_ne!(out.code, Some(0), "{args:?} succeeded: {}", out.stdout);
    assert!(out.code.is_some(), "{args:?}: killed by a signal");
    assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    lines[0].to_owned()
}

#[test]
fn bad_arguments() {
    let keys = keys_file("a 1\n");
    let k = keys.path().to_str().unwrap();
    let t = "http://127.0.0.1:9";
    let line = fails(&["segments", "--target", t, "--keys", k, "--zipf", "-1"]);
    assert!(line.contains("--zipf"), "{line}");
    let line = fails(&["segments", "--target", t, "--keys", "/nonexistent/keys.txt"]);
    assert!(line.contains("/nonexistent/keys.txt"), "{line}");
    let line = fails(&["segments", "--target", "ftp://x", "--keys", k]);
    assert!(line.contains("http://"), "{line}");
    let line = fails(&[
        "segments",
        "--target",
        t,
        "--keys",
        k,
        "--server-pid",
        "4294967295",
    ]);
    assert!(line.contains("no such process"), "{line}");
    let line = fails(&["segments", "--target", t]);
    assert!(line.contains("--keys"), "{line}");
    fails(&["segments", "--target", t, "--keys", k, "--duration", "soon"]);
    fails(&["compare", "--a", t, "--keys", k]);
    fails(&["frobnicate"]);
}

#[test]
fn bad_catalogue_lines_name_the_line() {
    let keys = keys_file("a 1\nb many\n");
    let line = fails(&[
        "segments",
        "--target",
        "http://127.0.0.1:9",
        "--keys",
        keys.path().to_str().unwrap(),
    ]);
    assert!(line.contains(":2: size \"many\""), "{line}");
}

#[test]
fn https_without_trust_or_with_a_bad_ca_file() {
    let keys = keys_file("a 1\n");
    let k = keys.path().to_str().unwrap();
    let line = fails(&[
        "segments",
        "--target",
        "https://127.0.0.1:9",
        "--keys",
        k,
        "--ca",
        "/nonexistent.pem",
    ]);
    assert!(line.contains("/nonexistent.pem"), "{line}");
    fails(&[
        "segments",
        "--target",
        "https://127.0.0.1:9",
        "--keys",
        k,
        "--ca",
        "/x",
        "--insecure",
    ]);
}
