//! Against a scripted origin: TLS (any certificate, a given CA, TLS 1.2),
//! servers that close every connection, and responses the client rejects.

mod support;

use support::{assert_sane, bench, data, keys_file, origin, pattern};

fn one_object() -> (Vec<u8>, tempfile::NamedTempFile) {
    let body = pattern(100_000, 3);
    let keys = keys_file("seg.m4s 100000\n");
    (body, keys)
}

fn run(url: &str, keys: &tempfile::NamedTempFile, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "segments",
        "--target",
        url,
        "--keys",
        keys.path().to_str().unwrap(),
        "--duration",
        "300ms",
        "--connections",
        "2",
        "--threads",
        "1",
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    bench(&args).json()
}

#[test]
fn https_with_any_certificate() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).tls().run();
    let v = run(&o.url, &keys, &["--insecure"]);
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        v["requests"].as_u64().unwrap() * 100_000
    );
}

#[test]
fn https_with_a_ca_and_tls12() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).tls().run();
    let ca = data("ca.pem");
    let ca = ca.to_str().unwrap();
    let v = run(&o.url, &keys, &["--ca", ca]);
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    let v = run(&o.url, &keys, &["--ca", ca, "--tls12"]);
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");

    // The leaf is not a CA: trusting only it fails every handshake.
    let leaf = data("leaf.pem");
    let v = run(&o.url, &keys, &["--ca", leaf.to_str().unwrap()]);
    assert_eq!(v["requests"], 0, "{v}");
    assert!(v["errors"]["connect"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn connections_closed_by_the_server_are_reopened_and_counted() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).close_each().run();
    let v = run(&o.url, &keys, &[]);
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    // Every response closes its connection, so nearly every request reconnects
    // (the first request of each connection and requests in warmup do not count).
    let requests = v["requests"].as_u64().unwrap();
    let reconnects = v["reconnects"].as_u64().unwrap();
    assert!(reconnects + 2 >= requests && reconnects <= requests, "{v}");
}

#[test]
fn chunked_bodies_are_protocol_errors() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).chunked().run();
    let v = run(&o.url, &keys, &[]);
    assert_eq!(v["requests"], 0, "{v}");
    let e = &v["errors"];
    assert!(e["protocol"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(e["total"], e["protocol"], "{v}");
}

#[test]
fn size_mismatch_is_a_length_error() {
    let (body, _) = one_object();
    let keys = keys_file("seg.m4s 99999\n");
    let o = origin().object("seg.m4s", &body).run();
    let v = run(&o.url, &keys, &[]);
    let e = &v["errors"];
    assert!(e["length"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(e["total"], e["length"], "{v}");
}

#[test]
fn refused_connections_are_connect_errors() {
    // Bind a port and close it again: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, keys) = one_object();
    let v = run(&format!("http://127.0.0.1:{port}"), &keys, &[]);
    assert_eq!(v["requests"], 0);
    let e = &v["errors"];
    assert!(e["connect"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(e["total"], e["connect"], "{v}");
}

#[test]
fn a_hung_server_cannot_hold_the_run_past_the_hard_stop() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).hang().run();
    let started = std::time::Instant::now();
    // --timeout 10s: the stuck responses are cut off at the hard stop
    // (end + 3 s), not after 10 s, and count as timeouts.
    let v = run(&o.url, &keys, &[]);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    assert_eq!(v["requests"], 0, "{v}");
    assert_eq!(
        v["errors"]["timeout"], 2,
        "one stuck request per connection: {v}"
    );
    assert_eq!(v["errors"]["total"], 2, "{v}");
}

#[test]
fn per_request_timeout() {
    let (body, keys) = one_object();
    let o = origin().object("seg.m4s", &body).hang().run();
    let v = run(&o.url, &keys, &["--timeout", "100ms"]);
    assert_eq!(v["requests"], 0, "{v}");
    // 300 ms of 100 ms timeouts on 2 connections: a few each, all timeouts.
    let timeouts = v["errors"]["timeout"].as_u64().unwrap();
    assert!((2..=8).contains(&timeouts), "{v}");
    assert_eq!(v["errors"]["total"], timeouts, "{v}");
    // Each timeout abandons its connection; the next request opens a new one.
    assert!(v["reconnects"].as_u64().unwrap() >= timeouts - 2, "{v}");
}
