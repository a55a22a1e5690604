//! oca-pack end to end: a tiny generated source is analysed, encoded and
//! packaged (killed once part-way and resumed), and the real `steering
//! catalog import` takes the result; a full disk fails cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::{binary, wait_for};

/// Fast settings: two trial CRFs at two sizes on one 1-second chunk,
/// ultrafast x264, SSIM (no libvmaf needed), 2-second segments.
const FAST: &[&str] = &[
    "--metric",
    "ssim",
    "--preset",
    "ultrafast",
    "--crfs",
    "24,34",
    "--heights",
    "144",
    "--chunks",
    "2",
    "--chunk-secs",
    "1",
    "--min-bitrate",
    "20000",
    "--quality-step",
    "0.5",
];

fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src.mkv");
    let o = Command::new(binary("oca-pack"))
        .args(["source", "testpattern"])
        .arg(&src)
        .args(["--seconds", "4", "--size", "320x180"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    src
}

fn encode(src: &Path, out: &Path) -> Command {
    let mut c = Command::new(binary("oca-pack"));
    c.arg("encode")
        .arg(src)
        .arg(out)
        .args(["--title", "t1", "--name", "Packed", "--region", "eu-west"])
        .args(["--segment", "2"])
        .args(FAST);
    c
}

fn import(dir: &Path, packaged: &Path) -> Output {
    let cfg = dir.join("steering.toml");
    std::fs::write(
        &cfg,
        format!("database = \"{}\"\n", dir.join("steering.db").display()),
    )
    .unwrap();
    Command::new(binary("steering"))
        .args(["catalog", "import"])
        .arg(packaged)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap()
}

#[test]
fn a_packaged_title_resumes_after_a_kill_and_imports() {
    let d = tempfile::tempdir().unwrap();
    let src = source(d.path());
    let out = d.path().join("out");

    // Kill the first run (and its ffmpeg) once a trial result is on disk.
    let mut first = encode(&src, &out);
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let mut child = first.stderr(Stdio::null()).spawn().unwrap();
    let trials = out.join(".oca-pack/t1/trials");
    wait_for("a finished trial", || {
        std::fs::read_dir(&trials)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
    });
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    assert!(!out.join("titles/t1").exists());

    let o = encode(&src, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("kept from an earlier run"), "{stderr}");
    assert!(stderr.contains("SSIM in dB"), "{stderr}");
    assert!(!out.join(".oca-pack").exists(), "work left behind");

    let title = out.join("titles/t1");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(title.join("ladder.json")).unwrap()).unwrap();
    assert_eq!(sidecar["analysis"]["metric"], "ssim-db");
    let rungs = sidecar["rungs"].as_array().unwrap();
    assert!(!rungs.is_empty());
    for r in rungs {
        assert!(r["quality"].as_f64().unwrap() > 5.0, "{r}");
        assert!(r["bitrate_bps"].as_f64().unwrap() > 1000.0, "{r}");
        // Aligned, fixed-length segments: every rung cut at 2 s, 4 s.
        let list =
            std::fs::read_to_string(title.join(r["name"].as_str().unwrap()).join("index.m3u8"))
                .unwrap();
        let durations: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .collect();
        assert_eq!(durations, ["2.000000,", "2.000000,"], "{list}");
    }
    let master = std::fs::read_to_string(title.join("master.m3u8")).unwrap();
    assert!(master.contains("CODECS=\"avc1."), "{master}");
    assert_eq!(
        std::fs::read_to_string(title.join("title.toml")).unwrap(),
        "name = \"Packed\"\nregions = [\"eu-west\"]\nartwork = [\"poster.jpg\"]\n"
    );
    // The poster: one JPEG frame, 640 pixels wide.
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width",
            "-of",
            "csv=p=0",
        ])
        .arg(title.join("poster.jpg"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "mjpeg,640");

    // A player (ffmpeg's HLS and DASH readers) finds every rung and the audio.
    for manifest in ["master.m3u8", "dash/manifest.mpd"] {
        let url = format!("file:{}", title.join(manifest).display());
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=index,codec_type",
                "-of",
                "csv=p=0",
            ])
            .arg(&url)
            .output()
            .unwrap();
        let streams = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Streams are listed under each HLS program and again on their own.
        let distinct: std::collections::BTreeSet<&str> = streams
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let video = distinct.iter().filter(|l| l.ends_with(",video")).count();
        assert_eq!(
            video,
            rungs.len(),
            "{url}: {streams} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            distinct.iter().any(|l| l.ends_with(",audio")),
            "{url}: {streams}"
        );
    }

    let o = import(d.path(), &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // HLS: one per rung; DASH: one per rung and the audio.
    let renditions = 2 * rungs.len() + 1;
    assert!(
        stdout.contains(&format!("1 titles, {renditions} renditions")),
        "{stdout}"
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_no_title() {
    let d = tempfile::tempdir().unwrap();
    let src = source(d.path());
    let out = d.path().join("small");
    std::fs::create_dir_all(&out).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mounting a tmpfs needs root (the test machines run as root)"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&out);

    let o = encode(&src, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("oca-pack: ") && last.to_lowercase().contains("no space left on device"),
        "{stderr}"
    );
    assert!(!out.join("titles/t1").exists());
    // Nothing an import would take: it finds no titles at all.
    let o = import(d.path(), &out);
    assert!(!o.status.success());
}
