//! steering and real oca processes on loopback: registration, health polling,
//! inventory deltas and resync, keys from steering verifying on the appliance,
//! steering restarts (kill -9), and the control plane being down.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use e2e::stack;
use e2e::*;

const CREDENTIAL: &str = "oca-1-secret-credential";
const FAKE_CREDENTIAL: &str = "fake-1-secret-credential";

fn steering_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("steering.toml");
    let db = dir.join("steering.db");
    // The e2e content is encrypted: its key is imported under this.
    let kek = dir.join("kek");
    std::fs::write(&kek, format!("{}\n", "7e".repeat(32))).unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(
        &path,
        format!(
            r#"
listen = "127.0.0.1:0"
database = "{db}"
heartbeat_interval = "200ms"
max_body_bytes = 65536
[health]
interval = "200ms"
timeout = "500ms"
down_after = 2
up_after = 2
[keys]
rotate_every = "1h"
lifetime = "3h"
[drm]
key_file = "{kek}"
[[appliance]]
id = "oca-1"
credential = "{CREDENTIAL}"
tier = "embedded"
site = "isp-a-1"
region = "eu-west"
asn = 64500
admin_url = "http://127.0.0.1:1"
capacity_bps = 10000000000
[[appliance]]
id = "fake-1"
credential = "{FAKE_CREDENTIAL}"
tier = "ixp"
site = "ixp-1"
region = "eu-west"
admin_url = "http://127.0.0.1:1"
capacity_bps = 40000000000
"#,
            db = db.display(),
            kek = kek.display()
        ),
    )
    .unwrap();
    path
}

fn oca_config(dir: &Path, steering: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("oca.toml");
    std::fs::write(
        &path,
        format!(
            r#"
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["{store}"]
workers = 1
[control]
url = "http://{steering}"
appliance_id = "oca-1"
credential = "{CREDENTIAL}"
cache_dir = "{cache}"
tier = "embedded"
site = "isp-a-1"
region = "eu-west"
asn = 64500
"#,
            store = dir.join("disk0").display(),
            cache = dir.join("control-cache").display(),
        ),
    )
    .unwrap();
    path
}

fn put(dir: &Path, key: &str, bytes: &[u8]) {
    let p = dir.join("disk0/objects").join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn auth(id: &str, cred: &str) -> String {
    format!("Bearer {id}:{cred}")
}

fn appliance(steering: std::net::SocketAddr, id: &str) -> Option<serde_json::Value> {
    let r = http(steering, "GET", "/v1/appliances", &[], b"")?;
    r.json().as_array()?.iter().find(|a| a["id"] == id).cloned()
}

/// Sign a token with the key set steering serves to appliances.
fn token(steering: std::net::SocketAddr, prefix: &str) -> String {
    let r = http(
        steering,
        "GET",
        "/v1/keys",
        &[("Authorization", &auth("oca-1", CREDENTIAL))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let set: control_client::wire::KeySetWire = serde_json::from_slice(&r.body).unwrap();
    let ks = set.to_keyset().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = urlsign::Claims {
        expires: now + 600,
        path_prefix: prefix,
        client: None,
    };
    urlsign::sign(ks.signing_key(now).unwrap(), &claims).unwrap()
}

/// Real packaged content (the e2e content's t1, made by oca-pack: its HLS
/// rungs, and as many DASH video Representations plus the audio), imported
/// into steering's catalog; returns the packaged directory.
fn package_and_import(dir: &Path, scfg: &Path) -> std::path::PathBuf {
    let packaged = dir.join("packaged");
    stack::copy_tree(
        &stack::content().join("titles/t1"),
        &packaged.join("titles/t1"),
    );
    stack::copy_tree(&stack::content().join("keys"), &packaged.join("keys"));
    let out = std::process::Command::new(binary("steering"))
        .args(["catalog", "import"])
        .arg(&packaged)
        .args(["--config", scfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let renditions = stack::rendition_count(&packaged, "t1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{renditions} renditions")),
        "{stdout}"
    );
    packaged
}

/// Copy the files of one packaged directory (a rendition, or the title's own
/// playlists) onto oca's disk.
fn copy_in(packaged: &Path, dir: &Path, sub: &str) {
    let from = packaged.join("titles/t1").join(sub);
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            let rel = e.path().strip_prefix(packaged).unwrap().to_path_buf();
            put(
                dir,
                rel.to_str().unwrap(),
                &std::fs::read(e.path()).unwrap(),
            );
        }
    }
}

#[test]
fn appliances_register_report_and_survive_control_plane_failures() {
    let dir = tempfile::tempdir().unwrap();
    let scfg = steering_config(dir.path());
    let packaged = package_and_import(dir.path(), &scfg);
    // The appliance holds every rung but the top one, plus files the catalog
    // does not list (playlists, the DASH packaging): those are reported once,
    // refused with unknown_rendition, and left out afterwards.
    let ladder = stack::ladder(&packaged, "t1");
    let (top, held) = ladder.split_last().expect("rungs");
    let lowest = &held[0].dir;
    for sub in ["", "dash"]
        .into_iter()
        .chain(held.iter().map(|r| r.dir.as_str()))
    {
        copy_in(&packaged, dir.path(), sub);
    }
    let mut steering = Proc::start(
        "steering",
        &["--config", scfg.to_str().unwrap()],
        &[("STEERING_LOG", "warn")],
    );
    let s_addr = steering.addr("http=");
    let ocfg = oca_config(dir.path(), s_addr);
    let mut oca = Proc::start(
        "oca",
        &["--config", ocfg.to_str().unwrap()],
        &[("OCA_LOG", "warn")],
    );
    let o_http = oca.addr("http=");

    // Registration, health polling of the real admin address, full inventory.
    let a = wait_for("oca-1 registered, polled and reporting", || {
        let a = appliance(s_addr, "oca-1")?;
        (a["up"] == true && a["status"] == "ok" && a["renditions"] == held.len()).then_some(a)
    });
    assert_eq!(a["eligible"], true);
    assert_eq!(
        a["info"]["admin_url"],
        format!("http://{}", oca.addr("admin="))
    );

    // Keys from steering verify on the appliance (it fetched them itself).
    let tok = token(s_addr, "/titles/t1/");
    let seg = format!("/t/{tok}/titles/t1/{lowest}/seg-00000.m4s");
    wait_for("a steering-signed token to verify on oca", || {
        (http(o_http, "GET", &seg, &[], b"")?.status == 200).then_some(())
    });
    assert_eq!(
        http(
            o_http,
            "GET",
            &format!("/titles/t1/{lowest}/seg-00000.m4s"),
            &[],
            b""
        )
        .unwrap()
        .status,
        403
    );

    // The top rendition is filled in (copied, then each file requested once
    // as a first viewer would): a delta reaches steering.
    copy_in(&packaged, dir.path(), &top.dir);
    let mut files: Vec<String> = std::fs::read_dir(packaged.join("titles/t1").join(&top.dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for f in &files {
        let r = http(
            o_http,
            "GET",
            &format!("/t/{tok}/titles/t1/{}/{f}", top.dir),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{f}");
    }
    wait_for("the delta", || {
        (appliance(s_addr, "oca-1")?["renditions"] == ladder.len()).then_some(())
    });
    // Each holds at least the catalog's objects and bytes: all complete, as
    // soon as the decision snapshot (which `renditions_complete` comes from)
    // has the delta; it is built just after the registry takes it.
    wait_for("every rendition complete", || {
        (appliance(s_addr, "oca-1")?["renditions_complete"] == ladder.len()).then_some(())
    });

    // A lost delta is answered with a resync request; a full report repairs it.
    let fake = auth("fake-1", FAKE_CREDENTIAL);
    let health =
        serde_json::json!({"status": "ok", "egress_bps": 0, "capacity_bps": 1, "connections": 0});
    let lost = serde_json::json!({"health": health, "inventory": {"kind": "delta", "base_version": 7, "version": 8, "digest": "x", "upserted": [], "removed": []}});
    let r = http(
        s_addr,
        "POST",
        "/v1/appliances/fake-1/heartbeat",
        &[("Authorization", &fake)],
        lost.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["resync"].clone()),
        (200, serde_json::json!(true))
    );
    let holding = vec![control_client::wire::RenditionHolding {
        rendition: format!("titles/t1/{lowest}"),
        objects: 4,
        bytes: 400,
    }];
    let full = serde_json::json!({"health": health, "inventory": {"kind": "full", "version": 1, "digest": control_client::wire::inventory_digest(&holding), "renditions": holding}});
    let r = http(
        s_addr,
        "POST",
        "/v1/appliances/fake-1/heartbeat",
        &[("Authorization", &fake)],
        full.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["resync"].clone()),
        (200, serde_json::json!(false))
    );

    // Bad input: each a 4xx with a stable code, never a 500.
    let unknown = serde_json::json!({"health": health, "inventory": {"kind": "full", "version": 2, "digest": "x", "renditions": [{"rendition": "titles/zz/v1", "objects": 1, "bytes": 1}]}});
    let traversal = serde_json::json!({"health": health, "inventory": {"kind": "full", "version": 2, "digest": "x", "renditions": [{"rendition": "../etc", "objects": 1, "bytes": 1}]}});
    let cases: Vec<(&str, &str, String, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "/v1/appliances/fake-1/heartbeat",
            fake.clone(),
            b"{not json".to_vec(),
            400,
            "bad_json",
        ),
        (
            "unknown appliance",
            "/v1/appliances/nobody/heartbeat",
            auth("nobody", "whatever-credential"),
            b"{}".to_vec(),
            404,
            "unknown_appliance",
        ),
        (
            "wrong credential",
            "/v1/appliances/fake-1/heartbeat",
            auth("fake-1", "wrong-credential-xx"),
            b"{}".to_vec(),
            401,
            "bad_credential",
        ),
        (
            "no credential",
            "/v1/appliances/fake-1/heartbeat",
            String::new(),
            b"{}".to_vec(),
            401,
            "unauthenticated",
        ),
        (
            "another appliance's credential",
            "/v1/appliances/oca-1/heartbeat",
            fake.clone(),
            b"{}".to_vec(),
            403,
            "wrong_appliance",
        ),
        (
            "oversized body",
            "/v1/appliances/fake-1/heartbeat",
            fake.clone(),
            vec![b' '; 200_000],
            413,
            "body_too_large",
        ),
        (
            "bad rendition",
            "/v1/appliances/fake-1/heartbeat",
            fake.clone(),
            traversal.to_string().into_bytes(),
            422,
            "bad_rendition",
        ),
        (
            "rendition not in the catalog",
            "/v1/appliances/fake-1/heartbeat",
            fake.clone(),
            unknown.to_string().into_bytes(),
            422,
            "unknown_rendition",
        ),
        (
            "unknown endpoint",
            "/v1/nothing",
            fake.clone(),
            b"{}".to_vec(),
            404,
            "not_found",
        ),
    ];
    for (name, path, authz, body, status, code) in cases {
        let headers: Vec<(&str, &str)> = if authz.is_empty() {
            vec![]
        } else {
            vec![("Authorization", authz.as_str())]
        };
        let r = http(s_addr, "POST", path, &headers, &body).unwrap();
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["code"], code, "{name}");
    }

    // The appliance dies: steering marks it down; it comes back: up again.
    oca.kill9();
    wait_for("oca-1 marked down", || {
        (appliance(s_addr, "oca-1")?["up"] == false).then_some(())
    });
    let mut oca = Proc::start(
        "oca",
        &["--config", ocfg.to_str().unwrap()],
        &[("OCA_LOG", "warn")],
    );
    let o_http = oca.addr("http=");
    wait_for("oca-1 up again", || {
        (appliance(s_addr, "oca-1")?["up"] == true).then_some(())
    });
    let inventory_version = appliance(s_addr, "oca-1").unwrap()["inventory_version"].clone();

    // steering is killed: the appliance keeps serving with the keys it has, and a
    // restarted appliance serves with the keys cached on disk.
    steering.kill9();
    let seg = format!("/t/{tok}/titles/t1/{lowest}/seg-00001.m4s");
    assert_eq!(http(o_http, "GET", &seg, &[], b"").unwrap().status, 200);
    oca.kill9();
    let oca = Proc::start(
        "oca",
        &["--config", ocfg.to_str().unwrap()],
        &[("OCA_LOG", "error")],
    );
    let o_http = oca.addr("http=");
    assert_eq!(
        http(o_http, "GET", &seg, &[], b"").unwrap().status,
        200,
        "cached keys after restart"
    );

    // steering restarts on the same database: nothing committed was lost.
    let steering = Proc::start(
        "steering",
        &["--config", scfg.to_str().unwrap()],
        &[("STEERING_LOG", "warn")],
    );
    let s2 = steering.addr("http=");
    let a = appliance(s2, "oca-1").unwrap();
    assert_eq!(a["inventory_version"], inventory_version);
    assert_eq!(a["renditions"], ladder.len());
    assert_eq!(appliance(s2, "fake-1").unwrap()["renditions"], 1);
    let r = http(
        s2,
        "GET",
        "/v1/keys",
        &[("Authorization", &auth("oca-1", CREDENTIAL))],
        b"",
    )
    .unwrap();
    assert_eq!(
        r.json()["keys"].as_array().unwrap().len(),
        1,
        "no extra key minted by the restart"
    );
}

#[test]
fn rotated_keys_reach_the_appliance() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "titles/t2/v1/seg-0.m4s", b"rotating");
    let scfg = steering_config(dir.path());
    let text = std::fs::read_to_string(&scfg)
        .unwrap()
        .replace("rotate_every = \"1h\"", "rotate_every = \"1s\"")
        .replace("lifetime = \"3h\"", "lifetime = \"30s\"");
    std::fs::write(&scfg, text).unwrap();
    let steering = Proc::start(
        "steering",
        &["--config", scfg.to_str().unwrap()],
        &[("STEERING_LOG", "warn")],
    );
    let s_addr = steering.addr("http=");
    let ocfg = oca_config(dir.path(), s_addr);
    let oca = Proc::start(
        "oca",
        &["--config", ocfg.to_str().unwrap()],
        &[("OCA_LOG", "warn")],
    );
    // steering mints a key a second; the appliance follows the key set as it changes.
    let ids = wait_for("several rotations on the appliance", || {
        let h = http(oca.addr("admin="), "GET", "/health", &[], b"")?.json();
        let ids: Vec<String> = h["token_keys"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        (ids.len() >= 3).then_some(ids)
    });
    // A token signed with the newest key steering serves verifies.
    let seg = |tok: &str| format!("/t/{tok}/titles/t2/v1/seg-0.m4s");
    wait_for("the newest key to verify", || {
        let tok = token(s_addr, "/titles/t2/");
        (http(oca.addr("http="), "GET", &seg(&tok), &[], b"")?.status == 200).then_some(())
    });
    assert!(ids.iter().all(|id| id.starts_with('k')));
}
