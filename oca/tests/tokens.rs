//! Signed-URL access control, end to end over real sockets.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use support::*;
use urlsign::{Claims, Key};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn write_keys(path: &Path, entries: &[(&str, u8)]) {
    let text: String = entries
        .iter()
        .map(|(id, fill)| {
            use base64::Engine;
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([*fill; 32]);
            format!("[[key]]\nid = \"{id}\"\nsecret = \"{secret}\"\n")
        })
        .collect();
    // Write then rename, as a key distributor would, so the watcher never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn token(id: &str, fill: u8, expires: u64, prefix: &str, client: Option<&str>) -> String {
    let key = Key::new(id, &[fill; 32], None, None).unwrap();
    let claims = Claims {
        expires,
        path_prefix: prefix,
        client: client.map(|c| c.parse().unwrap()),
    };
    urlsign::sign(&key, &claims).unwrap()
}

#[test]
fn tokens_gate_every_object_request() {
    let body = pattern(10_000, 11);
    let dir = store()
        .object("titles/t1/v720/seg-00001.m4s", &body)
        .object("titles/t2/v720/seg-00001.m4s", b"other title")
        .build();
    let keys = dir.path().join("keys.toml");
    write_keys(&keys, &[("k1", 1), ("k2", 2)]);
    let mut cfg = config(&[dir.path()]);
    cfg.access = oca::access::AccessMode::Token;
    cfg.token_keys = Some(keys.clone());
    cfg.token_skew = std::time::Duration::from_secs(10);
    let srv = serve(cfg);

    let t = now();
    let good = token("k1", 1, t + 600, "/titles/t1/", None);
    let seg = "titles/t1/v720/seg-00001.m4s";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("path token", format!("/t/{good}/{seg}"), 200, ""),
        ("query token", format!("/{seg}?token={good}"), 200, ""),
        (
            "second key",
            format!("/t/{}/{seg}", token("k2", 2, t + 600, "/titles/", None)),
            200,
            "",
        ),
        (
            "client bound, inside",
            format!(
                "/t/{}/{seg}",
                token("k1", 1, t + 600, "/titles/t1/", Some("127.0.0.0/8"))
            ),
            200,
            "",
        ),
        ("missing", format!("/{seg}"), 403, "token-missing"),
        (
            "garbage",
            format!("/t/garbage/{seg}"),
            403,
            "token-malformed",
        ),
        (
            "unknown key",
            format!("/t/{}/{seg}", token("k9", 1, t + 600, "/", None)),
            403,
            "token-unknown-key",
        ),
        (
            "forged",
            format!("/t/{}/{seg}", token("k1", 7, t + 600, "/", None)),
            403,
            "token-bad-signature",
        ),
        (
            "expired",
            format!("/t/{}/{seg}", token("k1", 1, t - 60, "/", None)),
            403,
            "token-expired",
        ),
        (
            "expired within skew",
            format!("/t/{}/{seg}", token("k1", 1, t - 2, "/", None)),
            200,
            "",
        ),
        (
            "other title",
            format!("/t/{good}/titles/t2/v720/seg-00001.m4s"),
            403,
            "token-path",
        ),
        (
            "client bound, outside",
            format!(
                "/t/{}/{seg}",
                token("k1", 1, t + 600, "/", Some("198.51.100.0/24"))
            ),
            403,
            "token-client",
        ),
        (
            "missing object, valid token",
            format!("/t/{good}/titles/t1/v720/nope.m4s"),
            404,
            "",
        ),
    ];
    for (name, path, status, code) in &cases {
        let r = get(srv.http, path);
        assert_eq!(r.status, *status, "{name}");
        if *status == 200 {
            assert!(r.body == body || r.body == b"other title", "{name}");
        } else if !code.is_empty() {
            assert_eq!(String::from_utf8_lossy(&r.body).trim(), *code, "{name}");
        }
    }
    // Ranges work through a token, and relative URLs in a manifest inherit it.
    let mut c = connect(srv.http);
    let r = c.request(&format!(
        "GET /t/{good}/{seg} HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n"
    ));
    assert_eq!((r.status, &r.body[..]), (206, &body[100..200]));
    // Admin endpoints are never behind tokens.
    let health: serde_json::Value =
        serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(health["access"], "token");
    assert_eq!(health["token_keys"], serde_json::json!(["k1", "k2"]));
    let metrics = String::from_utf8(get(srv.admin, "/metrics").body).unwrap();
    assert!(
        metrics.contains("oca_token_rejections_total{reason=\"token-expired\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("oca_token_rejections_total{reason=\"token-missing\"} 1"));

    // Rotation: k1 is retired and k3 added by rewriting the file; no signal needed.
    write_keys(&keys, &[("k2", 2), ("k3", 3)]);
    let k3 = token("k3", 3, t + 600, "/titles/", None);
    wait_for("k3 to be accepted", || {
        (get(srv.http, &format!("/t/{k3}/{seg}")).status == 200).then_some(())
    });
    assert_eq!(get(srv.http, &format!("/t/{good}/{seg}")).status, 403);
    // A broken file keeps the current keys.
    std::fs::write(&keys, "not toml [").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for("the broken file to be refused", || {
        let m = String::from_utf8(get(srv.admin, "/metrics").body).ok()?;
        m.contains("oca_reload_failures_total 1").then_some(())
    });
    let h: serde_json::Value = serde_json::from_slice(&get(srv.admin, "/health").body).unwrap();
    assert_eq!(h["token_keys"], serde_json::json!(["k2", "k3"]));
    assert_eq!(get(srv.http, &format!("/t/{k3}/{seg}")).status, 200);
}

#[test]
fn sign_cli_and_sighup_reload() {
    let body = pattern(5000, 12);
    let dir = store().object("titles/t9/a.m4s", &body).build();
    let keys = dir.path().join("keys.toml");
    // `oca keygen` writes an entry; the key file must be private.
    let out = Command::new(env!("CARGO_BIN_EXE_oca"))
        .args(["keygen", "--id", "first"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&keys, &out.stdout).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oca"))
        .args([
            "--store",
            dir.path().to_str().unwrap(),
            "--token-keys",
            keys.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "group-readable key file must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();

    let d = daemon(&[
        "--store",
        dir.path().to_str().unwrap(),
        "--access",
        "token",
        "--token-keys",
        keys.to_str().unwrap(),
    ]);
    let sign = |prefix: &str| {
        let base = format!("http://{}", d.http);
        let out = Command::new(env!("CARGO_BIN_EXE_oca"))
            .args([
                "sign",
                "--keys",
                keys.to_str().unwrap(),
                "--prefix",
                prefix,
                "--ttl",
                "10m",
                "--url",
                &base,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let url = sign("/titles/t9/a.m4s");
    let path = url
        .strip_prefix(&format!("http://{}", d.http))
        .unwrap()
        .to_owned();
    assert_eq!(get(d.http, &path).body, body);

    // Replace the key file with a new key and tell the daemon with SIGHUP; a
    // keep-alive connection opened before the reload keeps working.
    let mut held = connect(d.http);
    assert_eq!(
        held.request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .status,
        200
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oca"))
        .args(["keygen", "--id", "second"])
        .output()
        .unwrap();
    std::fs::write(&keys, &out.stdout).unwrap();
    d.signal("HUP");
    let new_path = sign("/titles/t9/")
        .strip_prefix(&format!("http://{}", d.http))
        .unwrap()
        .to_owned()
        + "a.m4s";
    wait_for("the new key", || {
        (get(d.http, &new_path).status == 200).then_some(())
    });
    assert_eq!(get(d.http, &path).status, 403, "old key retired");
    assert_eq!(
        held.request(&format!("GET {new_path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .status,
        200
    );
}
