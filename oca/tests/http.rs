//! Loopback tests of the object-serving listener: real sockets, in-process server.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn req(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

#[test]
fn whole_object_ranges_and_conditionals() {
    let body = pattern(100_000, 1);
    let dir = store()
        .object("titles/t1/v720/seg-00001.m4s", &body)
        .build();
    let srv = serve(config(&[dir.path()]));
    let mut c = connect(srv.http);
    let path = "/titles/t1/v720/seg-00001.m4s";

    let full = c.request(&req("GET", path, ""));
    assert_eq!(full.status, 200);
    assert_eq!(full.body, body);
    assert_eq!(full.header("content-type"), Some("video/iso.segment"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(full.header("access-control-allow-origin"), Some("*"));
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    let etag = full.header("etag").unwrap().to_owned();
    let last_modified = full.header("last-modified").unwrap().to_owned();

    // Same keep-alive connection throughout.
    // (request header, status, expected body slice, Content-Range)
    type Case<'a> = (&'a str, u16, Option<(usize, usize)>, Option<&'a str>);
    let cases: &[Case<'_>] = &[
        (
            "Range: bytes=0-99\r\n",
            206,
            Some((0, 100)),
            Some("bytes 0-99/100000"),
        ),
        (
            "Range: bytes=99990-\r\n",
            206,
            Some((99_990, 100_000)),
            Some("bytes 99990-99999/100000"),
        ),
        (
            "Range: bytes=-10\r\n",
            206,
            Some((99_990, 100_000)),
            Some("bytes 99990-99999/100000"),
        ),
        (
            "Range: bytes=50000-999999999\r\n",
            206,
            Some((50_000, 100_000)),
            Some("bytes 50000-99999/100000"),
        ),
        (
            "Range: bytes=100000-\r\n",
            416,
            None,
            Some("bytes */100000"),
        ),
        ("Range: bytes=0-1,5-6\r\n", 200, Some((0, 100_000)), None),
        ("Range: items=0-1\r\n", 200, Some((0, 100_000)), None),
    ];
    for &(hdr, status, slice, content_range) in cases {
        let r = c.request(&req("GET", path, hdr));
        assert_eq!(r.status, status, "{hdr}");
        assert_eq!(r.header("content-range"), content_range, "{hdr}");
        if let Some((a, b)) = slice {
            assert_eq!(r.body, body[a..b], "{hdr}");
            assert_eq!(r.header("content-length").unwrap(), (b - a).to_string());
        }
    }
    // If-Range: matching validator applies the range, a stale one gets the whole object.
    let r = c.request(&req(
        "GET",
        path,
        &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
    ));
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = c.request(&req(
        "GET",
        path,
        "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n",
    ));
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    let r = c.request(&req(
        "GET",
        path,
        &format!("Range: bytes=0-9\r\nIf-Range: {last_modified}\r\n"),
    ));
    assert_eq!(r.status, 206);

    // Conditionals.
    let r = c.request(&req(
        "GET",
        path,
        &format!("If-None-Match: \"x\", {etag}\r\n"),
    ));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());
    let r = c.request(&req(
        "GET",
        path,
        &format!("If-Modified-Since: {last_modified}\r\n"),
    ));
    assert_eq!(r.status, 304);
    let r = c.request(&req(
        "GET",
        path,
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n",
    ));
    assert_eq!(r.status, 200);
    let r = c.request(&req("GET", path, "If-Match: \"other\"\r\n"));
    assert_eq!(r.status, 412);
    // Repeated lines (RFC 9110 §5.3): a list field's lines are one list; a
    // repeated singleton is invalid, so the date is ignored and so is Range.
    let r = c.request(&req(
        "GET",
        path,
        &format!("If-None-Match: \"x\"\r\nIf-None-Match: {etag}\r\n"),
    ));
    assert_eq!(r.status, 304);
    let r = c.request(&req(
        "GET",
        path,
        &format!("If-Modified-Since: {last_modified}\r\nIf-Modified-Since: {last_modified}\r\n"),
    ));
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    let r = c.request(&req(
        "GET",
        path,
        "Range: bytes=0-9\r\nRange: bytes=0-9\r\n",
    ));
    assert_eq!((r.status, r.body.len()), (200, body.len()));

    // HEAD: same headers, no body, connection still usable.
    let r = c.request(&req("HEAD", path, ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    let r = c.request(&req("GET", path, "Range: bytes=1-1\r\n"));
    assert_eq!(r.body, body[1..2]);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let a = pattern(5000, 2);
    let b = pattern(7000, 3);
    let dir = store().object("a.m4s", &a).object("b.m4s", &b).build();
    let srv = serve(config(&[dir.path()]));
    let mut c = connect(srv.http);
    let mut raw = String::new();
    raw += &req("GET", "/a.m4s", "");
    raw += &req("HEAD", "/b.m4s", "");
    raw += &req("GET", "/missing", "");
    raw += &req("GET", "/b.m4s", "Range: bytes=10-19\r\n");
    raw += &req("GET", "/a.m4s", "Connection: close\r\n");
    c.send(raw.as_bytes());
    let r1 = c.read_response(false);
    assert_eq!((r1.status, &r1.body), (200, &a));
    let r2 = c.read_response(true);
    assert_eq!(
        (r2.status, r2.header("content-length")),
        (200, Some("7000"))
    );
    assert_eq!(c.read_response(false).status, 404);
    let r4 = c.read_response(false);
    assert_eq!((r4.status, &r4.body[..]), (206, &b[10..20]));
    let r5 = c.read_response(false);
    assert_eq!(r5.header("connection"), Some("close"));
    assert_eq!(r5.body, a);
    assert!(c.closed_by_server());
}

#[test]
fn bad_requests_get_clear_statuses() {
    let dir = store().object("a.m4s", b"x").build();
    let mut cfg = config(&[dir.path()]);
    cfg.max_request_line = 1024;
    cfg.max_header_bytes = 4096;
    let srv = serve(cfg);

    let r = connect(srv.http).request(&req("DELETE", "/a.m4s", ""));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));

    let mut c = connect(srv.http);
    let r = c.request(&req("GET", &format!("/{}", "a".repeat(2000)), ""));
    assert_eq!(r.status, 414);
    assert!(c.closed_by_server());

    let mut c = connect(srv.http);
    let r = c.request(&req(
        "GET",
        "/a.m4s",
        &format!("X-Big: {}\r\n", "b".repeat(5000)),
    ));
    assert_eq!(r.status, 431);
    assert!(c.closed_by_server());

    let mut c = connect(srv.http);
    c.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 400);
    assert!(c.closed_by_server());

    let mut c = connect(srv.http);
    let r = c.request("GET /a.m4s HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "missing Host");
    assert!(String::from_utf8_lossy(&r.body).contains("Host"));

    // A request body on GET is not read, so the connection cannot be reused.
    let mut c = connect(srv.http);
    let r = c.request(&req("GET", "/a.m4s", "Content-Length: 3\r\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());

    // CORS preflight for a cross-origin range request.
    let r = connect(srv.http).request(&req(
        "OPTIONS",
        "/a.m4s",
        "Origin: https://player.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n",
    ));
    assert_eq!(r.status, 204);
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .contains("Range")
    );

    // HTTP/1.0 without keep-alive closes after the response.
    let mut c = connect(srv.http);
    let r = c.request("GET /a.m4s HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, &r.body[..]), (200, &b"x"[..]));
    assert!(c.closed_by_server());
}

#[test]
fn nothing_outside_the_store_is_reachable() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"top secret").unwrap();
    let dir = store().object("titles/ok.m4s", b"fine").build();
    let objects = dir.path().join("objects");
    std::os::unix::fs::symlink(outside.path().join("secret"), objects.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path(), objects.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink("../../", objects.join("titles/up")).unwrap();
    std::os::unix::fs::symlink("ok.m4s", objects.join("titles/alias.m4s")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::write(dir.path().join("tmp").join("partial.m4s"), b"partial").unwrap();
    let srv = serve(config(&[dir.path()]));

    let attempts = [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2e%2fsecret",
        "/titles/..%2f..%2fsecret",
        "/titles%5c..%5csecret",
        "/titles\\..\\secret",
        "/titles/ok.m4s%00.jpg",
        "//etc/passwd",
        "/etc/passwd",
        "/escape",
        "/escape-dir/secret",
        "/titles/up/tmp/partial.m4s",
        "/titles/up/objects/titles/ok.m4s",
        "/../tmp/partial.m4s",
        "/tmp/partial.m4s",
        "/titles/",
        "/",
        "http://evil/../secret",
    ];
    for path in attempts {
        let mut c = connect(srv.http);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(
            find(&r.body, b"secret").is_none() && find(&r.body, b"partial").is_none(),
            "{path}"
        );
    }
    // Symlinks that stay inside the store are fine; percent-encoding is decoded.
    assert_eq!(get(srv.http, "/titles/alias.m4s").body, b"fine");
    assert_eq!(get(srv.http, "/titles/%6Fk.m4s").body, b"fine");
    assert_eq!(get(srv.http, "http://host/titles/ok.m4s").body, b"fine");
}

#[test]
fn slow_and_idle_clients_are_cut_off() {
    let dir = store().object("a.m4s", b"x").build();
    let mut cfg = config(&[dir.path()]);
    cfg.header_timeout = Duration::from_millis(300);
    cfg.idle_timeout = Duration::from_millis(500);
    let srv = serve(cfg);

    // Slowloris: a head that never completes gets 408 and a close.
    let mut c = connect(srv.http);
    let t = Instant::now();
    c.send(b"GET /a.m4s HTTP/1.1\r\nHost: t\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 408);
    assert!(c.closed_by_server());
    assert!(t.elapsed() < DEADLINE);

    // An idle keep-alive connection is closed without a response.
    let mut c = connect(srv.http);
    assert_eq!(c.request(&req("GET", "/a.m4s", "")).status, 200);
    assert!(c.closed_by_server());
}

#[test]
fn connection_cap_answers_503() {
    let dir = store().object("a.m4s", b"x").build();
    let mut cfg = config(&[dir.path()]);
    cfg.max_connections = 2;
    let srv = serve(cfg);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect(srv.http);
        assert_eq!(c.request(&req("GET", "/a.m4s", "")).status, 200);
        held.push(c);
    }
    let mut c = connect(srv.http);
    let r = c.read_response(false);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(c.closed_by_server());
    // Capacity comes back once a held connection goes away.
    drop(held.pop());
    wait_for("a free slot", || {
        let mut c = connect(srv.http);
        c.send(req("GET", "/a.m4s", "").as_bytes());
        (c.read_response(false).status == 200).then_some(())
    });
    let metrics = get(srv.admin, "/metrics");
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("oca_http_connections_rejected_total "),
        "{text}"
    );
    assert!(!text.contains("oca_http_connections_rejected_total 0\n"));
}

#[test]
fn missing_disk_is_skipped_and_new_objects_are_found() {
    let good = store().object("a.m4s", b"on the good disk").build();
    let missing = good.path().join("no-such-disk");
    let srv = serve(config(&[&missing, good.path()]));
    assert_eq!(get(srv.http, "/a.m4s").body, b"on the good disk");

    let health: serde_json::Value =
        serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["disks"][0]["state"], "missing");
    assert_eq!(health["disks"][1]["state"], "ok");
    assert_eq!(health["objects"], 1);

    // Copied in after start (as an operator would): served and indexed.
    put_object(good.path(), "late/b.m4s", b"late");
    assert_eq!(get(srv.http, "/late/b.m4s").body, b"late");
    let health: serde_json::Value =
        serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(health["objects"], 2);
}

#[test]
fn health_and_metrics_describe_the_server() {
    let body = pattern(1 << 20, 4);
    let dir = store().object("big.m4s", &body).build();
    let srv = serve(config(&[dir.path()]));
    for _ in 0..4 {
        assert_eq!(get(srv.http, "/big.m4s").body.len(), body.len());
    }
    assert_eq!(get(srv.http, "/nope").status, 404);
    let h = get(srv.admin, "/health");
    assert_eq!(h.header("content-type"), Some("application/json"));
    let health: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["objects"], 1);
    assert_eq!(health["bytes"], 1 << 20);
    assert_eq!(health["capacity_bps"], 10_000_000_000u64);
    for field in [
        "uptime_secs",
        "version",
        "connections_active",
        "egress_bps",
        "utilisation",
        "workers",
    ] {
        assert!(!health[field].is_null(), "{field}");
    }
    // The egress rate is sampled each second; it shows the megabytes just sent.
    wait_for("egress rate", || {
        let health: serde_json::Value =
            serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
        (health["egress_bps"].as_u64().unwrap() > 0).then_some(())
    });

    let text = String::from_utf8(get(srv.admin, "/metrics").body).unwrap();
    for needle in [
        "oca_http_responses_total{class=\"2xx\"} 4",
        "oca_http_responses_total{class=\"4xx\"} 1",
        "oca_http_request_duration_seconds_count 5",
        "oca_store_objects{disk=",
        "oca_disk_io_errors_total{disk=",
        "oca_http_connections_active",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let sent: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("oca_http_sent_bytes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 4 << 20);
    assert_eq!(get(srv.admin, "/other").status, 404);
}

#[test]
fn both_threading_models_serve() {
    let body = pattern(300_000, 5);
    let dir = store().object("a.m4s", &body).build();
    for threading in [
        oca::config::Threading::PerCore,
        oca::config::Threading::Shared,
    ] {
        let mut cfg = config(&[dir.path()]);
        cfg.threading = threading;
        let srv = serve(cfg);
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let addr = srv.http;
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut c = connect(addr);
                    for _ in 0..20 {
                        assert_eq!(c.request(&req("GET", "/a.m4s", "")).body, body);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        srv.stop();
    }
}

#[test]
fn cold_objects_are_loaded_off_the_serving_threads() {
    let body = pattern(6 << 20, 13);
    let dir = store().object("cold.m4s", &body).build();
    let path = dir.path().join("objects/cold.m4s");
    let evict = || {
        let f = std::fs::File::open(&path).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        f
    };
    let f = evict();
    let Some(cached) = oca::sys::is_cached(&f, body.len() as u64, 0, body.len() as u64) else {
        eprintln!("kernel without cachestat(2): nothing to check");
        return;
    };
    // DONTNEED is advice; if the kernel kept the pages, the test has no cold data.
    if cached {
        eprintln!("pages stayed cached after DONTNEED: nothing to check");
        return;
    }
    let srv = serve(config(&[dir.path()]));
    // Whole object and a range deep inside it, both cold, both correct.
    assert!(get(srv.http, "/cold.m4s").body == body);
    // Pages still referenced by just-sent socket buffers cannot be dropped until
    // the kernel frees those buffers, so evict until the range really is cold.
    wait_for("the range to leave the page cache", || {
        let f = evict();
        (oca::sys::is_cached(&f, body.len() as u64, 5_000_000, 100_001) == Some(false))
            .then_some(())
    });
    let mut c = connect(srv.http);
    let r = c.request("GET /cold.m4s HTTP/1.1\r\nHost: t\r\nRange: bytes=5000000-5100000\r\n\r\n");
    assert!(r.body == body[5_000_000..=5_100_000]);
    let metrics = String::from_utf8(get(srv.admin, "/metrics").body).unwrap();
    let loads: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oca_disk_cold_loads_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(loads >= 2, "{loads} cold loads counted");
}

#[test]
fn local_agents_refresh_objects_read_access_statistics_and_report_fill_status() {
    let dir = store().object("titles/t1/v1/a.m4s", b"first").build();
    let root = root_path(&dir);
    let status = dir.path().join("fill-status.json");
    let mut cfg = config(&[&root]);
    cfg.fill_status = Some(status.clone());
    let srv = serve(cfg);
    let stats = |admin| -> serde_json::Value {
        serde_json::from_slice(&get(admin, "/store/renditions").body).unwrap()
    };
    assert_eq!(stats(srv.admin)[0]["objects"], 1);
    // A fill agent commits an object and says so: indexed (and so reported) at once.
    put_object(&root, "titles/t1/v1/b.m4s", b"second!");
    let mut c = connect(srv.admin);
    let r = c.request(
        "POST /store/refresh/titles/t1/v1/b.m4s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["present"].as_bool(), v["size"].as_u64()),
        (Some(true), Some(7))
    );
    assert_eq!(stats(srv.admin)[0]["objects"], 2);
    // Requests show up in the access statistics.
    for _ in 0..3 {
        assert_eq!(get(srv.http, "/titles/t1/v1/b.m4s").status, 200);
    }
    let s = stats(srv.admin);
    assert!(s[0]["hits"].as_u64().unwrap() >= 1, "{s}");
    assert!(s[0]["last_access"].as_u64().unwrap() > 0);
    // Evicted: removed from disk, refreshed, gone from the index.
    std::fs::remove_file(root.join("objects/titles/t1/v1/b.m4s")).unwrap();
    let r = c.request(
        "POST /store/refresh/titles/t1/v1/b.m4s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(stats(srv.admin)[0]["objects"], 1);
    let r = c.request(
        "POST /store/refresh/../etc/passwd HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // Objects are never POSTed to.
    let mut o = connect(srv.http);
    let r = o.request("POST /titles/t1/v1/a.m4s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    // The fill agent's status appears in /health, with its age.
    let h: serde_json::Value = serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(h["fill"]["state"], "unknown");
    std::fs::write(&status, br#"{"state":"filling","bytes_done":5}"#).unwrap();
    let h: serde_json::Value = serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(
        (
            h["fill"]["state"].as_str(),
            h["fill"]["bytes_done"].as_u64()
        ),
        (Some("filling"), Some(5))
    );
    assert!(h["fill"]["age_secs"].as_u64().is_some());
}
