//! Bad input gets one clear line and a non-zero exit, and leaves no title
//! behind that `steering catalog import` would accept.

use std::path::Path;
use std::process::{Command, Output};

fn oca_pack(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oca-pack"))
        .args(args)
        .arg(out)
        .args(["--title", "t1", "--metric", "ssim", "--preset", "ultrafast"])
        .output()
        .expect("run oca-pack")
}

fn ffmpeg(args: &[&str]) {
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg")
        .success();
    assert!(ok, "ffmpeg {args:?}");
}

#[test]
fn refuses_bad_sources_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video\n").unwrap();
    let audio = d.path().join("tone.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        audio.to_str().unwrap(),
    ]);
    let missing = d.path().join("missing.mkv");
    let cases: [(&Path, i32, &str); 4] = [
        (&text, 65, "not a video file"),
        (&audio, 65, "no video stream"),
        (&missing, 66, "cannot read"),
        (d.path(), 66, "cannot read"),
    ];
    for (source, code, needle) in cases {
        let out = d.path().join("out");
        let o = oca_pack(&["encode", source.to_str().unwrap()], &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(o.status.code(), Some(code), "{source:?}: {stderr}");
        assert_eq!(lines.len(), 1, "{source:?}: {stderr}");
        assert!(
            lines[0].starts_with("oca-pack: ") && lines[0].contains(needle),
            "{source:?}: {stderr}"
        );
        assert!(!out.join("titles/t1").exists());
    }
}

#[test]
fn refuses_bad_titles_and_existing_ones() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_oca-pack"))
        .args(["encode", "whatever.mkv"])
        .arg(&out)
        .args(["--title", "../escape", "--metric", "ssim"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("title id"));
    std::fs::create_dir_all(out.join("titles/t1")).unwrap();
    let o = oca_pack(&["encode", "whatever.mkv"], &out);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
}
