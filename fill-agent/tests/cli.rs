//! The binary's configuration handling: good configs pass, bad ones name the
//! field and exit 64.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fill-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"stores = ["/srv/oca/d0"]
[control]
url = "http://steering:7000"
appliance_id = "a1"
credential = "0123456789abcdef"
"#;

#[test]
fn check_config_accepts_good_and_names_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.toml");
    std::fs::write(&f, GOOD).unwrap();
    let (code, out, _) = run(&["check-config", "--config", f.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, "fill-agent: config ok"));
    let cases = [
        ("stores = []\n", "stores"),
        ("rate_bps = 10\n", "rate_bps"),
        ("concurrency = 0\n", "concurrency"),
        ("headroom_percent = 100.0\n", "headroom_percent"),
        ("oca_admin = \"ftp://x\"\n", "oca_admin"),
        ("poll_interval = \"soon\"\n", "line 1"),
        ("speed = 3\n", "speed"),
    ];
    for (line, field) in cases {
        std::fs::write(&f, format!("{line}{GOOD}")).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        // A repeated key is a parse error of its own; drop the good copy.
        let text = if line.starts_with("stores") {
            text.replacen("stores = [\"/srv/oca/d0\"]\n", "", 1)
        } else {
            text
        };
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = run(&["check-config", "--config", f.to_str().unwrap()]);
        assert_eq!(code, 64, "{line}: {err}");
        assert!(err.contains(field), "{line}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let (code, _, err) = run(&["check-config", "--config", "/nonexistent.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("/nonexistent.toml"));
}

#[test]
fn help_describes_every_option() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for (option, words) in [
        ("--config <FILE>", "TOML configuration file"),
        ("--clock-start <UNIX>", "simulated clock"),
        ("--clock-speed <FACTOR>", "seconds per real second"),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("{option} not in --help:\n{out}"));
        assert!(line.contains(words), "{option}: {line}");
    }
    // A clock speed means nothing without a simulated clock.
    let (code, _, err) = run(&["--clock-speed", "60", "check-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--clock-start"), "{err}");
}
