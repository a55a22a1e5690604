//! Disk faults underneath a serving oca: a damaged object is quarantined and
//! never served; a disk that vanishes, is unmounted or becomes unreadable is
//! taken out (its objects neither served nor reported) while the other disks
//! keep serving, and comes back when it is usable again.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn health(admin: std::net::SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&get(admin, "/health").body).unwrap()
}

fn disk_field(admin: std::net::SocketAddr, disk: usize, field: &str) -> serde_json::Value {
    health(admin)["disks"][disk][field].clone()
}

fn post(addr: std::net::SocketAddr, path: &str) -> Response {
    connect(addr).request(&format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
}

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

#[test]
fn a_truncated_object_is_quarantined_and_never_served_and_the_other_disk_serves_on() {
    let a = pattern(300_000, 1);
    let b = pattern(200_000, 2);
    let d0 = store().object("titles/t1/v1/a.m4s", &a).build();
    let d1 = store().object("titles/t1/v2/b.m4s", &b).build();
    let mut cfg = config(&[d0.path(), d1.path()]);
    // Reopen on every request, so the check runs on the next one.
    cfg.open_file_cache_valid = Duration::ZERO;
    let s = serve(cfg);
    assert_eq!(get(s.http, "/titles/t1/v1/a.m4s").body, a);

    // Something truncates the file underneath oca.
    let path = d0.path().join("objects/titles/t1/v1/a.m4s");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let r = get(s.http, "/titles/t1/v1/a.m4s");
    assert_eq!(r.status, 404, "a damaged object is never served");
    assert!(!path.exists(), "moved out of objects/");
    let moved: Vec<_> = std::fs::read_dir(d0.path().join("quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0]
            .file_name()
            .to_str()
            .unwrap()
            .ends_with("titles%2Ft1%2Fv1%2Fa.m4s")
    );
    assert_eq!(disk_field(s.admin, 0, "quarantined"), 1);
    assert_eq!(disk_field(s.admin, 0, "objects"), 0);
    let metrics = String::from_utf8(get(s.admin, "/metrics").body).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oca_disk_quarantined_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    // Inventory no longer claims it.
    let renditions = String::from_utf8(get(s.admin, "/store/renditions").body).unwrap();
    assert!(!renditions.contains("titles/t1/v1"), "{renditions}");
    // The other disk is untouched.
    assert_eq!(get(s.http, "/titles/t1/v2/b.m4s").body, b);

    // The fill agent fetches it again and tells oca: served again.
    put_object(d0.path(), "titles/t1/v1/a.m4s", &a);
    assert_eq!(
        post(s.admin, "/store/refresh/titles/t1/v1/a.m4s").status,
        200
    );
    assert_eq!(get(s.http, "/titles/t1/v1/a.m4s").body, a);
    s.stop();
}

/// Mount a tmpfs at `dir` (the tests run as root, as the suite does).
fn mount_tmpfs(dir: &Path) {
    sh(&format!(
        "mount -t tmpfs -o size=16m tmpfs '{}'",
        dir.display()
    ));
}

#[test]
fn an_unmounted_disk_is_taken_out_and_comes_back_when_mounted_again() {
    let base = tempfile::tempdir().unwrap();
    let (m0, m1) = (base.path().join("disk0"), base.path().join("disk1"));
    for m in [&m0, &m1] {
        std::fs::create_dir(m).unwrap();
        mount_tmpfs(m);
    }
    // Unmount whatever is still mounted however the test ends.
    struct Unmount(Vec<std::path::PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for m in &self.0 {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
    let _unmount = Unmount(vec![m0.clone(), m1.clone()]);
    let a = pattern(100_000, 3);
    let b = pattern(100_000, 4);
    put_object(&m0, "titles/t1/v1/a.m4s", &a);
    put_object(&m1, "titles/t1/v2/b.m4s", &b);
    let mut cfg = config(&[&m0, &m1]);
    cfg.require_mount = true;
    cfg.disk_check_interval = Duration::from_millis(100);
    cfg.open_file_cache_valid = Duration::ZERO;
    let s = serve(cfg);
    assert_eq!(get(s.http, "/titles/t1/v1/a.m4s").body, a);

    // The disk goes away (lazily: oca's open handle does not keep it).
    sh(&format!("umount -l '{}'", m0.display()));
    wait_for("disk0 taken out", || {
        (disk_field(s.admin, 0, "state") == "missing").then_some(())
    });
    let problem = disk_field(s.admin, 0, "problem");
    assert!(
        problem.as_str().unwrap().contains("not a mount point"),
        "{problem}"
    );
    assert_eq!(get(s.http, "/titles/t1/v1/a.m4s").status, 404);
    assert_eq!(get(s.http, "/titles/t1/v2/b.m4s").body, b);
    let renditions = String::from_utf8(get(s.admin, "/store/renditions").body).unwrap();
    assert!(!renditions.contains("titles/t1/v1"), "{renditions}");
    assert!(renditions.contains("titles/t1/v2"), "{renditions}");
    // Nothing was created on the filesystem underneath the mount point.
    assert!(!m0.join("objects").exists());

    // A disk is mounted there again (the same content, as after a reboot).
    mount_tmpfs(&m0);
    put_object(&m0, "titles/t1/v1/a.m4s", &a);
    wait_for("disk0 back", || {
        (disk_field(s.admin, 0, "state") == "ok").then_some(())
    });
    assert_eq!(disk_field(s.admin, 0, "objects"), 1);
    assert_eq!(get(s.http, "/titles/t1/v1/a.m4s").body, a);
    s.stop();
}

#[test]
fn a_disk_that_becomes_unreadable_is_taken_out_until_it_is_readable_again() {
    // As root, permissions do not bind; run the real binary as `nobody`.
    let base = tempfile::tempdir().unwrap();
    let (d0, d1) = (base.path().join("d0"), base.path().join("d1"));
    let a = pattern(50_000, 5);
    let b = pattern(50_000, 6);
    put_object(&d0, "titles/t1/v1/a.m4s", &a);
    put_object(&d1, "titles/t1/v2/b.m4s", &b);
    let cfg = base.path().join("oca.toml");
    std::fs::write(
        &cfg,
        format!(
            "stores = [\"{}\", \"{}\"]\ndisk_check_interval = \"100ms\"\nopen_file_cache_valid = \"0s\"\n",
            d0.display(),
            d1.display()
        ),
    )
    .unwrap();
    sh(&format!(
        "chmod 755 '{b}' && chown -R 65534:65534 '{b}'",
        b = base.path().display()
    ));
    let oca = env!("CARGO_BIN_EXE_oca");
    let d = daemon_as_nobody(oca, &cfg);
    assert_eq!(get(d.http, "/titles/t1/v1/a.m4s").body, a);

    sh(&format!("chmod 000 '{}'", d0.join("objects").display()));
    // State and problem from one document: two reads may straddle a check.
    let disk = wait_for("disk0 taken out", || {
        let disk = health(d.admin)["disks"][0].clone();
        (disk["state"] == "missing").then_some(disk)
    });
    assert!(
        disk["problem"]
            .as_str()
            .is_some_and(|p| p.contains("ermission denied")),
        "{disk}"
    );
    assert_eq!(get(d.http, "/titles/t1/v1/a.m4s").status, 404);
    assert_eq!(get(d.http, "/titles/t1/v2/b.m4s").body, b);

    sh(&format!("chmod 755 '{}'", d0.join("objects").display()));
    wait_for("disk0 back", || {
        (disk_field(d.admin, 0, "state") == "ok").then_some(())
    });
    assert_eq!(get(d.http, "/titles/t1/v1/a.m4s").body, a);
}

/// The oca binary as uid/gid 65534 (nobody), with its addresses read back.
fn daemon_as_nobody(oca: &str, cfg: &Path) -> support::Daemon {
    support::daemon_with(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(oca)
            .arg("--config")
            .arg(cfg)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--access", "open"]),
    )
}
