//! HTTPS with real clients: curl and openssl s_client (handshakes, ALPN,
//! resumption), and certificate reload on SIGHUP with a connection held open.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use support::*;

/// A self-signed certificate for localhost/127.0.0.1 made by openssl.
fn make_cert(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed (the test script installs it)")
        .success();
    assert!(ok);
    (cert, key)
}

fn https_daemon(dir: &Path, cert: &Path, key: &Path) -> (Daemon, u16) {
    https_daemon_mapped(dir, cert, key, true)
}

/// `https_daemon`, encrypting bodies from mappings of the objects (the
/// default) if `mapped`, else reading them into buffers first.
fn https_daemon_mapped(dir: &Path, cert: &Path, key: &Path, mapped: bool) -> (Daemon, u16) {
    let config = dir.join(format!("oca-mapped-{mapped}.toml"));
    std::fs::write(&config, format!("tls_mapped_bodies = {mapped}\n")).unwrap();
    let d = daemon(&[
        "--config",
        config.to_str().unwrap(),
        "--store",
        dir.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let port = d.https.expect("https address").port();
    (d, port)
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl")
}

#[test]
fn curl_over_tls12_and_tls13() {
    curl_over_tls12_and_tls13_with(true);
}

#[test]
fn curl_over_tls12_and_tls13_with_bodies_read_into_buffers() {
    curl_over_tls12_and_tls13_with(false);
}

fn curl_over_tls12_and_tls13_with(mapped: bool) {
    let body = pattern(5 << 20, 21);
    let dir = store().object("titles/t1/seg.m4s", &body).build();
    let (cert, key) = make_cert(dir.path(), "c1", "oca-test-1");
    let (_d, port) = https_daemon_mapped(dir.path(), &cert, &key, mapped);
    let url = format!("https://localhost:{port}/titles/t1/seg.m4s");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for versions in [
        ["--tlsv1.3", "--tls-max", "1.3"],
        ["--tlsv1.2", "--tls-max", "1.2"],
    ] {
        let base = ["--cacert", cert.to_str().unwrap(), "--resolve", &resolve];
        let out = curl(&[&base[..], &versions[..], &[url.as_str()]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == body, "{versions:?}: body differs");
        let out = curl(
            &[
                &base[..],
                &versions[..],
                &["-r", "1000000-1999999", url.as_str()],
            ]
            .concat(),
        );
        assert!(
            out.stdout == body[1_000_000..2_000_000],
            "{versions:?}: range differs"
        );
        let out = curl(
            &[
                &base[..],
                &versions[..],
                &["-I", "-w", "%{http_version}", url.as_str()],
            ]
            .concat(),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-length: 5242880")
        );
    }
    // An untrusted certificate is refused by the client, as it should be.
    let out = curl(&["--resolve", &resolve, &url]);
    assert!(!out.status.success());
}

/// A mapped page that cannot be read (the object truncated in place while it
/// is being sent) cuts that one response; oca quarantines the object and
/// serves on, instead of ending with SIGBUS.
#[test]
fn an_object_truncated_under_a_mapped_body_cuts_one_response_and_oca_serves_on() {
    let big = pattern(48 << 20, 5);
    let small = pattern(300_000, 6);
    let dir = store()
        .object("titles/t1/big.m4s", &big)
        .object("titles/t1/small.m4s", &small)
        .build();
    let (cert, key) = make_cert(dir.path(), "c1", "oca-test-1");
    let (mut d, port) = https_daemon_mapped(dir.path(), &cert, &key, true);
    let resolve = format!("localhost:{port}:127.0.0.1");
    let base = ["--cacert", cert.to_str().unwrap(), "--resolve", &resolve];
    let got = dir.path().join("got");
    let slow = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--limit-rate", "8M", "-o"])
        .arg(&got)
        .args(base)
        .arg(format!("https://localhost:{port}/titles/t1/big.m4s"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the download under way", || {
        std::fs::metadata(&got).ok().filter(|m| m.len() >= 1 << 20)
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("objects/titles/t1/big.m4s"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let out = slow.wait_with_output().unwrap();
    assert!(!out.status.success(), "a cut response must not look whole");
    let received = std::fs::metadata(&got).unwrap().len();
    assert!(received < big.len() as u64, "{received}");
    assert_eq!(
        std::fs::read(&got).unwrap()[..],
        big[..received as usize],
        "what arrived is the object's bytes, never the zeros put over the bad pages"
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "oca is still running"
    );
    let health: serde_json::Value = serde_json::from_slice(&get(d.admin, "/health").body).unwrap();
    assert_eq!(health["disks"][0]["quarantined"], 1, "{health}");
    let out = curl(
        &[
            &base[..],
            &[&format!("https://localhost:{port}/titles/t1/small.m4s")[..]],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == small);
}

/// Run `openssl s_client` with `extra` args, send one request, return its output.
fn s_client(port: u16, extra: &[&str], request: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-alpn",
            "http/1.1",
            "-ign_eof",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = wait_output(child);
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_output(mut child: Child) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        let _ = tx.send(v);
    });
    let out = rx.recv_timeout(DEADLINE);
    let _ = child.kill();
    let _ = child.wait();
    out.expect("s_client did not finish")
}

#[test]
fn openssl_alpn_and_session_resumption() {
    let dir = store().object("a.m4s", b"resumable").build();
    let (cert, key) = make_cert(dir.path(), "c1", "oca-test-1");
    let (_d, port) = https_daemon(dir.path(), &cert, &key);
    let req = "GET /a.m4s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = dir.path().join(format!("sess{version}.pem"));
        let first = s_client(port, &[version, "-sess_out", sess.to_str().unwrap()], req);
        assert!(first.contains("ALPN protocol: http/1.1"), "{first}");
        assert!(
            first.contains("HTTP/1.1 200 OK") && first.contains("resumable"),
            "{first}"
        );
        assert!(first.contains("New, TLSv1."), "{first}");
        let second = s_client(port, &[version, "-sess_in", sess.to_str().unwrap()], req);
        assert!(
            second.contains("Reused, TLSv1."),
            "{version}: not resumed:\n{second}"
        );
        assert!(second.contains("resumable"));
    }
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let dir = store().object("a.m4s", b"still here\n").build();
    let (cert, key) = make_cert(dir.path(), "live", "first-cert");
    let (d, port) = https_daemon(dir.path(), &cert, &key);
    let req = "GET /a.m4s HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // A keep-alive connection opened before the reload.
    let mut held = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-ign_eof",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut held_in = held.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let held_out = held.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(held_out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let await_body = |rx: &mpsc::Receiver<String>| loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("response on the held connection");
        if line.contains("still here") {
            break;
        }
    };
    held_in.write_all(req.as_bytes()).unwrap();
    await_body(&rx);

    let subject = || {
        s_client(
            port,
            &[],
            "GET /a.m4s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
    };
    assert!(subject().contains("CN = first-cert") || subject().contains("CN=first-cert"));

    // New certificate in place; SIGHUP; new connections get it.
    let (c2, k2) = make_cert(dir.path(), "next", "second-cert");
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    d.signal("HUP");
    wait_for("the new certificate", || {
        let out = subject();
        (out.contains("CN = second-cert") || out.contains("CN=second-cert")).then_some(())
    });
    // The connection from before the reload still works.
    held_in.write_all(req.as_bytes()).unwrap();
    await_body(&rx);

    // A broken certificate is refused and the good one stays in use.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    d.signal("HUP");
    wait_for("the broken certificate to be refused", || {
        let m = String::from_utf8(get(d.admin, "/metrics").body).ok()?;
        m.contains("oca_reload_failures_total 1").then_some(())
    });
    let out = subject();
    assert!(
        out.contains("second-cert") && out.contains("still here"),
        "{out}"
    );
    let health: serde_json::Value = serde_json::from_slice(&get(d.admin, "/health").body).unwrap();
    assert_eq!(health["tls"]["enabled"], true);
    assert_eq!(health["tls"]["kernel_tls_built"], cfg!(feature = "ktls"));
    let path = health["tls"]["path"].as_str().unwrap();
    assert!(
        path == "userspace" || (path == "kernel" && cfg!(feature = "ktls")),
        "{path}"
    );
    let metrics = String::from_utf8(get(d.admin, "/metrics").body).unwrap();
    assert!(
        metrics.contains("oca_tls_connections_total{path=\"userspace\"}"),
        "{metrics}"
    );
    drop(held_in);
    let _ = held.kill();
    let _ = held.wait();
}

/// The admin listener over TLS (`admin.tls`) with credentials: curl gets the
/// full /health only with a token that may have it, a load balancer's check
/// without one gets the status alone, plaintext is not spoken, and a caller
/// outside its scopes is told so.
#[test]
fn the_admin_listener_over_tls_asks_callers_for_credentials() {
    const OPS: &str = "operator-token-0123456789abcdef0123456789";
    const SCRAPE: &str = "prometheus-token-0123456789abcdef01234567";
    let dir = store().object("titles/t1/seg.m4s", b"x").build();
    let (cert, key) = make_cert(dir.path(), "admin", "oca-admin-test");
    let callers = dir.path().join("callers");
    std::fs::write(
        &callers,
        format!("ops all {OPS}\nprometheus metrics {SCRAPE}\n"),
    )
    .unwrap();
    let config = dir.path().join("oca-admin.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n[admin]\ncallers_file = \"{}\"\n\
             open_health = true\ntls = true\n",
            cert.display(),
            key.display(),
            callers.display()
        ),
    )
    .unwrap();
    let d = daemon(&[
        "--config",
        config.to_str().unwrap(),
        "--store",
        dir.path().to_str().unwrap(),
    ]);
    let port = d.admin.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let get = |path: &str, token: Option<&str>| {
        let url = format!("https://localhost:{port}{path}");
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["--cacert", cert.to_str().unwrap(), "--resolve", &resolve];
        args.extend(["-w", "\n%{http_code}"]);
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        args.push(&url);
        let out = curl(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), body.trim_end().to_owned())
    };
    let (code, body) = get("/health", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "ok"}),
        "the status and nothing else"
    );
    let (code, body) = get("/health", Some(OPS));
    assert_eq!(code, 200);
    assert!(body.contains("\"disks\""), "{body}");
    assert_eq!(get("/metrics", None), (401, "credential required".into()));
    assert_eq!(get("/metrics", Some(SCRAPE)).0, 200);
    assert_eq!(
        get("/store/renditions", Some(SCRAPE)),
        (403, "caller prometheus may not use renditions".into())
    );
    // Plaintext to the TLS admin port gets no answer.
    let out = curl(&[&format!("http://127.0.0.1:{port}/health")]);
    assert!(!out.status.success());
}
