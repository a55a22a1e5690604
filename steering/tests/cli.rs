//! The steering binary's configuration handling.

use std::process::Command;

fn steering(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steering"))
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
fn help_explains_every_global_option() {
    let (code, out, _) = steering(&["--help"]);
    assert_eq!(code, 0);
    for (flag, words) in [
        ("--config <FILE>", "configuration file"),
        ("--listen <ADDR>", "listens on"),
        ("--database <FILE>", "SQLite file"),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing: {out}"));
        assert!(line.contains(words), "{flag} has no help: {line:?}");
    }
}

#[test]
fn check_config_names_the_bad_field_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:0\"\n[health]\ninterval = \"1s\"\n",
    )
    .unwrap();
    let (code, out, _) = steering(&["check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("config ok"));
    let cases = [
        (
            "[keys]\nrotate_every = \"2h\"\nlifetime = \"1h\"\n",
            "keys.lifetime",
        ),
        ("[health]\ndown_after = 0\n", "health"),
        ("listen = \"nowhere\"\n", "line 1"),
        ("colour = \"blue\"\n", "colour"),
        (
            "[[appliance]]\nid = \"a b\"\ncredential = \"0123456789abcdef\"\ntier = \"ixp\"\nsite = \"s\"\nregion = \"r\"\nadmin_url = \"http://x\"\ncapacity_bps = 1\n",
            "appliance.id",
        ),
        (
            "[[appliance]]\nid = \"a\"\ncredential = \"short\"\ntier = \"ixp\"\nsite = \"s\"\nregion = \"r\"\nadmin_url = \"http://x\"\ncapacity_bps = 1\n",
            "appliance.credential",
        ),
        (
            "[[appliance]]\nid = \"a\"\ncredential = \"0123456789abcdef\"\ntier = \"satellite\"\nsite = \"s\"\nregion = \"r\"\nadmin_url = \"http://x\"\ncapacity_bps = 1\n",
            "satellite",
        ),
        ("[fill]\nwindow = \"2:00-6:00\"\n", "fill.window"),
        ("[fill]\nplanner = \"magic\"\n", "planner"),
        ("[fill]\nreplicas = 0\n", "fill.replicas"),
        ("[fill]\nhead_share = 1.5\n", "fill.head_share"),
        ("[drm]\nmax_licences = 0\n", "drm.max_licences"),
        ("[drm]\nkey_file = \"/nonexistent/kek\"\n", "drm.key_file"),
        (
            "[[drm.proxy]]\nkey_system = \"org.w3.clearkey\"\nurl = \"http://x\"\ncredential_file = \"/c\"\n",
            "drm.proxy.key_system",
        ),
        (
            "[[drm.proxy]]\nkey_system = \"com.widevine.alpha\"\nurl = \"ftp://x\"\ncredential_file = \"/c\"\n",
            "drm.proxy.url",
        ),
        (
            "[[drm.proxy]]\nkey_system = \"com.widevine.alpha\"\nurl = \"https://x\"\ncredential_file = \"/nonexistent\"\n",
            "drm.proxy.credential_file",
        ),
        ("[fill]\nheadroom = 1.0\n", "fill.headroom"),
        ("[fill]\nhalf_life = \"0s\"\n", "fill.half_life"),
        (
            "[[appliance]]\nid = \"a\"\ncredential = \"0123456789abcdef\"\ntier = \"ixp\"\nsite = \"s\"\nregion = \"r\"\nadmin_url = \"http://x\"\ncapacity_bps = 1\nfill_window = \"22:00-22:00\"\n",
            "appliance.fill_window",
        ),
        (
            "[[appliance]]\nid = \"a\"\ncredential = \"0123456789abcdef\"\ntier = \"ixp\"\nsite = \"s\"\nregion = \"r\"\nadmin_url = \"http://x\"\ncapacity_bps = 1\nutc_offset = \"+15:00\"\n",
            "appliance.utc_offset",
        ),
    ];
    for (text, field) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = steering(&["check-config", "--config", f.to_str().unwrap()]);
        assert_eq!(code, 64, "{text}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(field), "{field} not named in {err}");
    }
    // A broken packaged directory: import fails naming the file.
    let (code, _, err) = steering(&[
        "catalog",
        "import",
        dir.path().to_str().unwrap(),
        "--database",
        dir.path().join("c.db").to_str().unwrap(),
    ]);
    assert_eq!(code, 65);
    assert!(err.contains("titles"), "{err}");
}
