//! `oca-pack encode --encrypt`: every rendition, HLS and DASH, is Common
//! Encryption (cenc) protected; the key ID is in the title, the key only in
//! OUT/keys (0600); ffmpeg decodes the segments with the key and not without.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn oca_pack(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_oca-pack"))
        .args(args)
        .output()
        .expect("run oca-pack");
    assert!(
        out.status.success(),
        "oca-pack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Frame hashes ffmpeg decodes from `init` + `segment` (with `key`), if it can.
fn frames(dir: &Path, init: &Path, segment: &Path, key: Option<&str>) -> Option<Vec<String>> {
    let joined = dir.join("joined.mp4");
    let bytes = [
        std::fs::read(init).unwrap(),
        std::fs::read(segment).unwrap(),
    ]
    .concat();
    std::fs::write(&joined, bytes).unwrap();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "quiet"]);
    if let Some(k) = key {
        cmd.args(["-decryption_key", k]);
    }
    let out = cmd
        .arg("-i")
        .arg(&joined)
        .args(["-f", "framemd5", "-"])
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

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn encrypted_packaging_protects_every_rendition_and_keeps_the_key_out_of_the_title() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.mkv");
    let out = d.path().join("out");
    oca_pack(&[
        "source",
        "testpattern",
        src.to_str().unwrap(),
        "--seconds",
        "6",
        "--size",
        "640x360",
    ]);
    let encode = |extra: &[&str]| {
        let mut args = vec![
            "encode",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--title",
            "t1",
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
            "24,30,36",
            "--heights",
            "240,360",
        ];
        args.extend_from_slice(extra);
        oca_pack(&args);
    };
    encode(&["--encrypt"]);

    let title = out.join("titles/t1");
    let drm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(title.join("drm.json")).unwrap()).unwrap();
    let keyfile = out.join("keys/t1.json");
    let mode = std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is its owner's only");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&keyfile).unwrap()).unwrap();
    assert_eq!(drm["scheme"], "cenc");
    assert_eq!(drm["kid"], key["kid"]);
    assert!(drm.get("key").is_none());
    let (kid, key_hex) = (key["kid"].as_str().unwrap(), key["key"].as_str().unwrap());

    // No key material anywhere in the title (what appliances hold): not as
    // hex, not as bytes.
    let raw = unhex(key_hex);
    for f in files(&title) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(16).any(|w| w == raw.as_slice()),
            "{}",
            f.display()
        );
        assert!(
            !String::from_utf8_lossy(&b).contains(key_hex),
            "{}",
            f.display()
        );
    }

    // Every rendition: its init segment signals cenc with the key ID; its
    // segments decode with the key and not without.
    let mut checked = 0;
    let mut hls = 0;
    for f in files(&title) {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with("init") {
            continue;
        }
        hls += usize::from(name.ends_with(".mp4"));
        let init = std::fs::read(&f).unwrap();
        let has = |n: &[u8]| init.windows(n.len()).any(|w| w == n);
        assert!(has(b"encv") || has(b"enca"), "{}", f.display());
        assert!(has(b"pssh") && has(&unhex(kid)), "{}", f.display());
        let dir = f.parent().unwrap();
        let seg = files(dir)
            .into_iter()
            .find(|p| p != &f && p.extension().is_some_and(|x| x == "m4s"))
            .unwrap();
        let with = frames(d.path(), &f, &seg, Some(key_hex)).expect("decodes with the key");
        assert!(with.len() > 10, "{}", seg.display());
        assert_ne!(
            frames(d.path(), &f, &seg, None),
            Some(with.clone()),
            "{}",
            seg.display()
        );
        checked += 1;
    }
    // Every HLS media playlist tells players its segments are protected.
    for e in std::fs::read_dir(&title).unwrap().flatten() {
        let playlist = e.path().join("index.m3u8");
        if playlist.exists() {
            let text = std::fs::read_to_string(&playlist).unwrap();
            let key_at = text
                .find("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"org.w3.clearkey\"")
                .unwrap();
            assert!(key_at < text.find("#EXT-X-MAP").unwrap(), "{text}");
        }
    }
    // Every HLS variant (a v* directory) and every DASH representation.
    let variants = std::fs::read_dir(&title)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('v'))
        .count();
    assert!(variants >= 2);
    assert_eq!(
        hls, variants,
        "each HLS variant's init segment is protected"
    );
    assert!(
        checked >= 2 * variants,
        "HLS and DASH renditions: {checked}"
    );

    // Packaging again rotates the key; clear packaging is still there.
    encode(&["--encrypt"]);
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&keyfile).unwrap()).unwrap();
    assert_ne!(again["kid"], key["kid"]);
    assert_ne!(again["key"], key["key"]);
    encode(&[]);
    assert!(!title.join("drm.json").exists());
    let init = std::fs::read(title.join("dash/r0/init.m4s")).unwrap();
    assert!(!init.windows(4).any(|w| w == b"encv"));
}
