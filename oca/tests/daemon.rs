//! The real `oca` binary: configuration handling, a client we did not write
//! (curl), and the SIGTERM drain.

mod support;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use support::*;

fn oca(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oca"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_good_and_names_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "stores = [\"/srv/oca/d0\"]\nworkers = 2\nidle_timeout = \"30s\"\naccess = \"open\"\n",
    )
    .unwrap();
    let (code, out, _) = oca(&["check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("config ok"));

    let cases = [
        ("stores = []\n", "stores"),
        (
            "stores = [\"/d\"]\nmax_connections = 0\n",
            "max_connections",
        ),
        ("stores = [\"/d\"]\nworkers = \"lots\"\n", "workers"),
        ("stores = [\"/d\"]\nlisen = [\"0.0.0.0:1\"]\n", "lisen"),
        (
            "stores = [\"/d\"]\nheader_timeout = \"forever\"\n",
            "header_timeout",
        ),
        (
            "stores = [\"/d\"]\nlisten = [\"not an address\"]\n",
            "line 2",
        ),
        ("this is not toml", "line 1"),
    ];
    for (text, field) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = oca(&["check-config", "--config", f.to_str().unwrap()]);
        assert_eq!(code, 64, "{text}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    // check-config also loads the token key file a token-mode config names.
    let f = dir.path().join("tokens.toml");
    std::fs::write(
        &f,
        "stores = [\"/d\"]\ntoken_keys = \"/no/such/keys.toml\"\n",
    )
    .unwrap();
    let (code, _, err) = oca(&["check-config", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert!(err.contains("/no/such/keys.toml"), "{err}");
    let (code, _, err) = oca(&["check-config", "--config", "/no/such/file.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("/no/such/file.toml"));
    // The daemon itself refuses a bad config the same way.
    let (code, _, err) = oca(&["--workers", "5000", "--store", "/d"]);
    assert_eq!(code, 64);
    assert!(err.contains("workers"));
}

fn curl(args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl must be installed (the test script installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_ranges_head_and_304() {
    let body = pattern(3 << 20, 7);
    let dir = store()
        .object("titles/t1/v1080/seg-00042.m4s", &body)
        .build();
    let d = daemon(&["--store", dir.path().to_str().unwrap()]);
    let url = format!("http://{}/titles/t1/v1080/seg-00042.m4s", d.http);

    let (got, _) = curl(&[&url]);
    assert!(got == body, "whole object differs");
    for (range, a, b) in [
        ("0-0", 0, 1),
        ("1000-2047", 1000, 2048),
        ("3145000-", 3_145_000, 3 << 20),
        ("-4096", (3 << 20) - 4096, 3 << 20),
    ] {
        let (got, _) = curl(&["-r", range, &url]);
        assert!(got == body[a..b], "range {range}");
    }
    // HEAD: headers only.
    let (head, _) = curl(&["-I", &url]);
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-length: 3145728"),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("ETag: ")
                .or_else(|| l.strip_prefix("etag: "))
        })
        .unwrap()
        .trim()
        .to_owned();
    // Conditional GET: 304 with the validator and no body.
    let (out, _) = curl(&["-i", "-H", &format!("If-None-Match: {etag}"), &url]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 304"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "304 must have no body");
    // curl's own etag machinery agrees.
    let etag_file = dir.path().join("etag");
    curl(&[
        "-o",
        "/dev/null",
        "--etag-save",
        etag_file.to_str().unwrap(),
        &url,
    ]);
    let (out, _) = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--etag-compare",
        etag_file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(out, b"304");
    // Resuming a download the way players and download managers do.
    let part = dir.path().join("part");
    std::fs::write(&part, &body[..1_000_000]).unwrap();
    curl(&["-C", "-", "-o", part.to_str().unwrap(), &url]);
    assert!(std::fs::read(&part).unwrap() == body);
    // Unsatisfiable range.
    let (out, _) = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        "9999999-",
        &url,
    ]);
    assert_eq!(out, b"416");
}

/// A daemon with `shutdown_grace` serving one big object, and a client that
/// read the first 1 KiB of it and then stopped reading, so the response is in flight.
fn download_in_flight(body: &[u8], grace: &str) -> (tempfile::TempDir, Daemon, Client, [u8; 1024]) {
    let dir = store().object("big.m4s", body).build();
    let cfg = dir.path().join("oca.toml");
    std::fs::write(
        &cfg,
        format!(
            "stores = [{:?}]\nshutdown_grace = \"{grace}\"\n",
            dir.path()
        ),
    )
    .unwrap();
    let d = daemon(&["--config", cfg.to_str().unwrap()]);
    let mut c = connect(d.http);
    c.send(b"GET /big.m4s HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 1024];
    c.stream.read_exact(&mut first).unwrap();
    (dir, d, c, first)
}

#[test]
fn sigterm_drains_in_flight_responses_then_exits_zero() {
    let body = pattern(48 << 20, 9);
    let (_dir, mut d, mut c, first) = download_in_flight(&body, "15s");

    d.signal("TERM");
    wait_for("health to say draining", || {
        let h = get(d.admin, "/health");
        let v: serde_json::Value = serde_json::from_slice(&h.body).ok()?;
        (v["status"] == "draining").then_some(())
    });
    // No new viewers are accepted.
    wait_for("listener to close", || {
        std::net::TcpStream::connect(d.http).is_err().then_some(())
    });

    // The in-flight response still completes, byte for byte.
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let head_end = find(&all, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(all[head_end..] == body[..], "drained body differs");
    assert_eq!(d.wait(DEADLINE), Some(0));
}

#[test]
fn grace_period_bounds_the_drain() {
    let (_dir, mut d, _stalled, _) = download_in_flight(&pattern(32 << 20, 10), "300ms");
    // An idle keep-alive connection must not hold up the exit either.
    let mut idle = connect(d.http);
    assert_eq!(
        idle.request("GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        404
    );
    d.signal("TERM");
    // The stalled reader never finishes; the daemon still exits 0 shortly after the grace.
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    assert!(idle.closed_by_server());
}
