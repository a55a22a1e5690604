//! Hostile clients against a real oca (`oca-bench hostile`, small numbers; the
//! full-size figures are in docs/RELIABILITY.md): the well-behaved client is
//! never refused or failed, descriptors do not leak, memory stays bounded, and
//! new connections are served once the attack stops.

use std::process::Command;

use e2e::{Proc, binary};

#[test]
fn slowloris_floods_stalled_readers_pipelines_and_resets_do_not_break_oca() {
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().join("objects/titles/x");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seg.m4s"), vec![7u8; 200_000]).unwrap();
    std::fs::write(dir.join("big.m4s"), vec![9u8; 8_000_000]).unwrap();
    let cfg = store.path().join("oca.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nstores = [\"{}\"]\n\
             access = \"open\"\nmax_connections = 600\nopen_file_cache = 64\nheader_timeout = \"2s\"\n\
             send_timeout = \"3s\"\nworkers = 2\n",
            store.path().display()
        ),
    )
    .unwrap();
    let oca = Proc::start(
        "oca",
        &["--config", cfg.to_str().unwrap()],
        &[("OCA_LOG", "error")],
    );
    let http = oca.addr("http=");
    let out = Command::new(binary("oca-bench"))
        .args(["hostile", "--json", "--calm", "2s", "--attack", "6s"])
        .args(["--url", &format!("http://{http}/titles/x/seg.m4s")])
        .args(["--big-url", &format!("http://{http}/titles/x/big.m4s")])
        .args(["--server-pid", &oca.child.id().to_string()])
        // 500 + 200 connections against a cap of 600: the flood goes past it.
        .args(["--slowloris", "500", "--flood", "200", "--stalled", "20"])
        .args([
            "--pipelines",
            "4",
            "--pipeline-depth",
            "50",
            "--resets-per-s",
            "20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The player on its keep-alive connection: every request answered.
    for phase in ["calm", "attack"] {
        assert!(r[phase]["requests"].as_u64().unwrap() > 50, "{r:#}");
        assert_eq!(r[phase]["errors"], 0, "{phase}: {r:#}");
    }
    // The attack happened, and past the cap some were refused (503), not hung.
    let a = &r["attackers"];
    assert!(a["slowloris_open_max"].as_i64().unwrap() >= 300, "{r:#}");
    assert!(a["flood_refused"].as_u64().unwrap() > 0, "{r:#}");
    assert!(a["pipelined_responses"].as_u64().unwrap() >= 200, "{r:#}");
    assert!(a["resets"].as_u64().unwrap() > 10, "{r:#}");
    // Afterwards: accepting, no descriptors left behind, memory bounded.
    assert_eq!(r["accepts_after"], true, "{r:#}");
    let s = &r["server"];
    assert!(s["fds_after"].as_u64().unwrap() < 100, "{r:#}");
    assert!(
        s["rss_kib_attack_max"].as_u64().unwrap() < 256 * 1024,
        "{r:#}"
    );
    // And it still serves.
    let ok = e2e::http(http, "GET", "/titles/x/seg.m4s", &[], b"").unwrap();
    assert_eq!(ok.status, 200);
}
