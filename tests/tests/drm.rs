//! Clear Key licences end to end: a title packaged encrypted
//! (`make-content.sh --encrypt`), imported with its key sealed under the
//! stack's key-encryption key, played, and licensed through the play's
//! licence URL, with every refusal the service has.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use e2e::stack::{self, Stack};
use e2e::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 1, 0, 42));

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Package `id` into `out` (titles/ and keys/) from `source` with a small,
/// fast ladder, encrypted if `encrypt`: the same source packages to the same
/// frames either way.
fn pack(source: &Path, out: &Path, id: &str, encrypt: bool) {
    let mut cmd = std::process::Command::new(binary("oca-pack"));
    cmd.arg("encode").arg(source).arg(out).args([
        "--title",
        id,
        "--name",
        id,
        "--region",
        "eu-west",
        "--region",
        "us-east",
        "--force",
        "--segment",
        "2",
        "--metric",
        "ssim",
        "--preset",
        "ultrafast",
        "--chunks",
        "2",
        "--chunk-secs",
        "2",
        "--crfs",
        "26,34",
        "--heights",
        "240,360",
    ]);
    if encrypt {
        cmd.arg("--encrypt");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "oca-pack encode {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short test-pattern source in `dir`.
fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src.mkv");
    let out = std::process::Command::new(binary("oca-pack"))
        .args(["source", "testpattern"])
        .arg(&src)
        .args(["--seconds", "6", "--size", "640x360"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    src
}

/// The e2e content plus `enc`, an encrypted title; its (kid, key) in hex.
fn packaged(dir: &Path) -> (std::path::PathBuf, String, String) {
    let packaged = dir.join("packaged");
    stack::copy_tree(&stack::content(), &packaged);
    pack(&source(dir), &packaged, "enc", true);
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(packaged.join("keys/enc.json")).unwrap()).unwrap();
    (
        packaged,
        key["kid"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

fn post(url: &str, body: &str) -> Response {
    let (addr, path) = split_url(url);
    http_from(
        Some(CLIENT),
        addr,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap()
}

fn split_url(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (host.parse().unwrap(), path.to_owned())
}

fn request(kids: &[&[u8]]) -> String {
    let kids: Vec<String> = kids.iter().map(|k| format!("\"{}\"", b64(k))).collect();
    format!(
        "{{\"kids\": [{}], \"type\": \"temporary\"}}",
        kids.join(",")
    )
}

fn code(r: &Response) -> (u16, String) {
    (r.status, r.json()["code"].as_str().unwrap_or("").to_owned())
}

fn play(s: &Stack, token: &str, title: &str) -> serde_json::Value {
    let r = s.play(CLIENT, token, title, "browser", "main");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn licences_are_the_plays_keys_only_within_its_limit_and_never_in_the_clear_elsewhere() {
    let work = tempfile::tempdir().unwrap();
    let (packaged, kid_hex, key_hex) = packaged(work.path());
    let kek = work.path().join("kek");
    std::fs::write(&kek, format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let origin = stack::nginx(&packaged);
    let extra = format!(
        "{}[drm]\nkey_file = \"{}\"\nmax_licences = 3\n",
        stack::origin_config(&origin),
        kek.display()
    );
    let s = stack::start_with(&stack::fleet(), &extra, &packaged);
    let (kid, key) = (unhex(&kid_hex), unhex(&key_hex));

    let alice = s.token("alice");
    let p = play(&s, &alice, "enc");
    let url = p["drm_license_url"].as_str().unwrap().to_owned();

    // The licence: exactly the key asked for, as a JSON Web Key set, with
    // CORS for players on other origins.
    let r = post(&url, &request(&[&kid]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let l = r.json();
    assert_eq!(l["type"], "temporary");
    assert_eq!(l["keys"][0]["kty"], "oct");
    assert_eq!(l["keys"][0]["kid"], b64(&kid));
    assert_eq!(l["keys"][0]["k"], b64(&key));
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let (addr, path) = split_url(&url);
    let pre = http(
        addr,
        "OPTIONS",
        &path,
        &[("Origin", "http://player.example")],
        b"",
    )
    .unwrap();
    assert_eq!(pre.status, 204);
    assert!(
        pre.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );

    // Refusals, each with its code, none of them costing a licence.
    assert_eq!(
        code(&post(&url, &request(&[&[9u8; 16]]))),
        (403, "kid_not_in_title".into())
    );
    assert_eq!(
        code(&post(&url, "{\"kids\": \"nope\"}")),
        (400, "bad_request".into())
    );
    assert_eq!(code(&post(&url, "")), (400, "bad_request".into()));
    let forged = url.replace("token=", "token=x");
    assert_eq!(post(&forged, &request(&[&kid])).status, 403);
    let get = http(addr, "GET", &path, &[], b"").unwrap();
    assert_eq!(get.status, 405);
    // A validly signed URL for a play that does not exist.
    let nobody = format!(
        "http://{}/v1/drm/no-such-play/license?token={}",
        s.addr,
        s.sign("/v1/drm/no-such-play/")
    );
    assert_eq!(
        code(&post(&nobody, &request(&[&kid]))),
        (404, "unknown_play".into())
    );
    // A clear title's play has no keys to give.
    let bob = s.token("bob");
    let clear = play(&s, &bob, "t1");
    let clear_url = clear["drm_license_url"].as_str().unwrap();
    assert_eq!(
        code(&post(clear_url, &request(&[&kid]))),
        (403, "kid_not_in_title".into())
    );

    // drm.max_licences = 3: two more, then no more for this play.
    assert_eq!(post(&url, &request(&[&kid])).status, 200);
    assert_eq!(post(&url, &request(&[&kid])).status, 200);
    assert_eq!(
        code(&post(&url, &request(&[&kid]))),
        (429, "too_many_licences".into())
    );

    // A play that ended gets none (alice's second stream of two).
    let p2 = play(&s, &alice, "enc");
    let url2 = p2["drm_license_url"].as_str().unwrap().to_owned();
    let stop = http_from(
        Some(CLIENT),
        s.addr,
        "DELETE",
        &format!("/v1/plays/{}", p2["play_id"].as_str().unwrap()),
        &[("Authorization", &format!("Bearer {alice}"))],
        b"",
    )
    .unwrap();
    assert!(stop.status < 300, "{}", stop.status);
    assert_eq!(
        code(&post(&url2, &request(&[&kid]))),
        (403, "expired".into())
    );

    // Counted per outcome.
    let m = String::from_utf8_lossy(&http(s.addr, "GET", "/metrics", &[], b"").unwrap().body)
        .into_owned();
    for outcome in [
        "ok",
        "kid_not_in_title",
        "bad_request",
        "unknown_play",
        "too_many_licences",
        "expired",
    ] {
        assert!(
            m.contains(&format!("steering_licences_total{{reason=\"{outcome}\"}}")),
            "{outcome}: {m}"
        );
    }
    // Importing again, logging everything: the key is in none of it.
    let out = std::process::Command::new(binary("steering"))
        .args(["catalog", "import"])
        .arg(&packaged)
        .arg("--config")
        .arg(&s.config)
        .env("STEERING_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged = [out.stdout, out.stderr].concat();
    let logged = String::from_utf8_lossy(&logged);
    assert!(
        !logged.contains(&key_hex) && !logged.contains(&b64(&key)),
        "{logged}"
    );
    // The key is nowhere but in the licence: not in the metrics, not in the
    // title the appliances and the origin hold, not in the store in the clear.
    assert!(!m.contains(&key_hex) && !m.contains(&b64(&key)));
    let titles = packaged.join("titles");
    assert_no_key(&files_under(&[&titles, s.dir.path()]), &key_hex, "enc");
}

/// No file of `files` holds the content key `key_hex` as raw bytes, as hex
/// (either case) or as base64url.
fn assert_no_key(files: &[std::path::PathBuf], key_hex: &str, title: &str) {
    let raw = unhex(key_hex);
    let spelled = [key_hex.to_owned(), key_hex.to_uppercase(), b64(&raw)];
    for f in files {
        // A file gone since the listing (a database journal, a renamed
        // temporary) holds nothing now.
        let b = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", f.display()),
        };
        assert!(
            !b.windows(16).any(|w| w == raw.as_slice()),
            "{title}'s key in {}",
            f.display()
        );
        let text = String::from_utf8_lossy(&b);
        assert!(
            !spelled.iter().any(|k| text.contains(k.as_str())),
            "{title}'s key in {}",
            f.display()
        );
    }
}

/// A stand-in for a commercial licence server: answers `/licence` with
/// `licence-for:` and the challenge, `/refuse` with 403; every request it
/// gets (head, body) goes to the channel.
fn stand_in() -> (
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<(String, Vec<u8>)>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                let Ok(n) = conn.read(&mut buf) else {
                    break (String::new(), Vec::new());
                };
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                raw.extend_from_slice(&buf[..n]);
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    break (head, raw[end + 4..end + 4 + len].to_vec());
                }
            };
            let refuse = head.starts_with("POST /refuse");
            let answer = [b"licence-for:".as_slice(), &body].concat();
            let reply = if refuse {
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            } else {
                [
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        answer.len()
                    )
                    .into_bytes(),
                    answer,
                ]
                .concat()
            };
            let _ = conn.write_all(&reply);
            let _ = tx.send((head, body));
        }
    });
    (addr, rx)
}

#[test]
fn commercial_key_systems_are_checked_here_and_forwarded_to_their_licence_server() {
    let work = tempfile::tempdir().unwrap();
    let private = |name: &str, text: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let kek = private("kek", &"5a".repeat(32));
    let cred = private("widevine-credential", "service-secret-42\n");
    let (server, requests) = stand_in();
    let extra = format!(
        "[drm]\nkey_file = \"{kek}\"\n\
         [[drm.proxy]]\nkey_system = \"com.widevine.alpha\"\nurl = \"http://{server}/licence\"\ncredential_file = \"{cred}\"\n\
         [[drm.proxy]]\nkey_system = \"com.microsoft.playready\"\nurl = \"http://{server}/refuse\"\ncredential_file = \"{cred}\"\n\
         [[drm.proxy]]\nkey_system = \"com.apple.fps\"\nurl = \"http://127.0.0.1:1/\"\ncredential_file = \"{cred}\"\ntimeout = \"1s\"\n",
        kek = kek.display(),
        cred = cred.display(),
    );
    let s = stack::start(&stack::fleet(), &extra);
    let alice = s.token("alice");
    let p = play(&s, &alice, "t1");
    let url = p["drm_license_url"].as_str().unwrap().to_owned();
    let proxied = |system: &str, body: &[u8]| {
        let (addr, path) = split_url(&url.replacen("/license?", &format!("/license/{system}?"), 1));
        http_from(
            Some(CLIENT),
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/octet-stream")],
            body,
        )
        .unwrap()
    };

    // Forwarded as is, with the service's credential and the play's title;
    // the licence server's answer comes back as is.
    let r = proxied("com.widevine.alpha", b"\x08\x01opaque-challenge");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, b"licence-for:\x08\x01opaque-challenge");
    let (head, body) = requests
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(body, b"\x08\x01opaque-challenge");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /licence "), "{head}");
    assert!(
        head.contains("authorization: bearer service-secret-42"),
        "{head}"
    );
    assert!(head.contains("x-oca-title: t1"), "{head}");

    // Checked here first: a key system nobody configured, an empty challenge,
    // a forged URL never reach a licence server.
    assert_eq!(
        code(&proxied("com.example.drm", b"x")),
        (404, "unknown_key_system".into())
    );
    assert_eq!(
        code(&proxied("com.widevine.alpha", b"")),
        (400, "bad_request".into())
    );
    let forged =
        url.replace("token=", "token=x")
            .replacen("/license?", "/license/com.widevine.alpha?", 1);
    let (addr, path) = split_url(&forged);
    assert_eq!(
        http_from(Some(CLIENT), addr, "POST", &path, &[], b"x")
            .unwrap()
            .status,
        403
    );
    // A licence server that refuses, or does not answer: 502 with a reason.
    assert_eq!(
        code(&proxied("com.microsoft.playready", b"x")),
        (502, "licence_server_refused".into())
    );
    assert_eq!(
        code(&proxied("com.apple.fps", b"x")),
        (502, "licence_server_unreachable".into())
    );
    // Nothing but the two requests above reached the stand-in.
    let _ = requests
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert!(requests.try_recv().is_err());
    // The credential is in no answer and in no metric.
    let m = http(s.addr, "GET", "/metrics", &[], b"").unwrap();
    assert!(!String::from_utf8_lossy(&m.body).contains("service-secret-42"));
}

/// Frame hashes ffmpeg decodes from an init segment and a media segment
/// (with `key`, hex), or `None` when it cannot decode them at all.
fn frames(dir: &Path, init: &[u8], segment: &[u8], key: Option<&str>) -> Option<Vec<String>> {
    let joined = dir.join("joined.mp4");
    std::fs::write(&joined, [init, segment].concat()).unwrap();
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "quiet"]);
    if let Some(k) = key {
        cmd.args(["-decryption_key", k]);
    }
    let out = cmd
        .arg("-i")
        .arg(&joined)
        .args(["-map", "0:v", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap_or("").trim().to_owned())
            .collect()
    })
}

/// Every file under `dirs`, recursively.
fn files_under(dirs: &[&Path]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo: Vec<_> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn appliances_hold_and_serve_only_ciphertext_and_no_daemon_logs_a_key() {
    // `enc` encrypted and `plain` in the clear from the same source: the
    // packager encodes both alike, so `plain`'s frames are what `enc`'s
    // must decode to with the key.
    let work = tempfile::tempdir().unwrap();
    let packaged = work.path().join("packaged");
    stack::copy_tree(&stack::content(), &packaged);
    let src = source(work.path());
    pack(&src, &packaged, "enc", true);
    pack(&src, &packaged, "plain", false);
    let keys: Vec<(String, String)> = std::fs::read_dir(packaged.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| {
            let k: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            (
                k["title"].as_str().unwrap().to_owned(),
                k["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let enc_key = keys.iter().find(|(t, _)| t == "enc").unwrap().1.clone();

    // Every daemon logging at debug; the embedded appliance filled from its
    // parent and the origin in the fill window.
    let origin = stack::nginx(&packaged);
    let s = stack::start_logging(
        &stack::fill_fleet(stack::Holds::All),
        &stack::origin_config(&origin),
        &packaged,
        "debug",
    );
    let midnight = 1_795_046_400u64;
    let agent = s.fill_agent("oca-e1", midnight + 3 * 3600, "");
    wait_for("the embedded appliance filled with enc", || {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.root("oca-e1").join("fill-status.json")).ok()?)
                .ok()?;
        let disk = s.root("oca-e1").join("disk0/objects/titles/enc");
        (st["state"] == "complete" && disk.exists()).then_some(())
    });

    // Licensed plays, so steering's licence path has run and logged.
    let alice = s.token("alice");
    let p = play(&s, &alice, "enc");
    let drm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(packaged.join("titles/enc/drm.json")).unwrap())
            .unwrap();
    let kid = unhex(drm["kid"].as_str().unwrap());
    let url = p["drm_license_url"].as_str().unwrap().to_owned();
    let r = post(&url, &request(&[&kid]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A protected segment as the filled appliance serves it: without the key
    // it does not give the clear frames; with the key it gives exactly them.
    let http_addr = s.appliances["oca-e1"].1;
    let token = s.sign("/titles/enc/");
    let get = |key: &str| {
        let url = format!("http://{http_addr}/{key}?token={token}");
        let r = get_url(Some(CLIENT), &url).unwrap();
        assert_eq!(r.status, 200, "{url}");
        r.body
    };
    let rung = stack::ladder(&packaged, "enc")[0].dir.clone();
    assert_eq!(
        stack::ladder(&packaged, "plain")[0].dir,
        rung,
        "the same source packages to the same ladder"
    );
    let init_name = std::fs::read_dir(packaged.join("titles/enc").join(&rung))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("init"))
        .unwrap();
    let init = get(&format!("titles/enc/{rung}/{init_name}"));
    let segment = get(&format!("titles/enc/{rung}/seg-00000.m4s"));
    let plain =
        |name: &str| std::fs::read(packaged.join("titles/plain").join(&rung).join(name)).unwrap();
    let clear = frames(
        work.path(),
        &plain(&init_name),
        &plain("seg-00000.m4s"),
        None,
    )
    .expect("the clear packaging decodes");
    assert!(clear.len() > 10, "{clear:?}");
    assert_ne!(
        frames(work.path(), &init, &segment, None),
        Some(clear.clone()),
        "decoded without the key"
    );
    assert_eq!(
        frames(work.path(), &init, &segment, Some(enc_key.as_str())),
        Some(clear),
        "decoded with the key"
    );

    // No key material on any appliance's disk or state, in steering's
    // directory, or in any daemon's log.
    let places = [s.dir.path()];
    let logs = [
        ("steering", s.steering.log()),
        ("fill-agent", agent.log()),
        ("oca-x1", s.appliances["oca-x1"].0.log()),
        ("oca-e1", s.appliances["oca-e1"].0.log()),
    ];
    assert!(
        logs[0].1.contains("DEBUG"),
        "steering logs at debug: {}",
        logs[0].1
    );
    for (title, key_hex) in &keys {
        assert_no_key(&files_under(&places), key_hex, title);
        let raw = unhex(key_hex);
        let spelled = [key_hex.clone(), key_hex.to_uppercase(), b64(&raw)];
        for (daemon, log) in &logs {
            assert!(
                !spelled.iter().any(|k| log.contains(k.as_str())),
                "{title}'s key in {daemon}'s log"
            );
        }
    }
}
