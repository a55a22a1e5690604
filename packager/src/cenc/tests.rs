use std::path::Path;
use std::process::Command;

use super::*;

const KEY: Key = Key {
    kid: [0x11; 16],
    key: [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ],
};

fn counter_ivs() -> impl FnMut() -> [u8; 8] {
    let mut n = 0u64;
    move || {
        n += 1;
        n.to_be_bytes()
    }
}

fn avc() -> Track {
    Track {
        nal_length: Some(4),
        nal_header: 1,
        hevc: false,
        default_sample_size: 0,
    }
}

fn nal(kind: u8, len: usize) -> Vec<u8> {
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.push(kind);
    v.extend((1..len).map(|i| i as u8));
    v
}

#[test]
fn subsamples_keep_prefixes_headers_and_partial_blocks_clear() {
    // An SPS (clear whole), a 100-byte IDR slice (header + 3 clear, 96
    // protected), a 10-byte slice (too short: clear), a 40-byte slice.
    let sample: Vec<u8> = [nal(0x67, 20), nal(0x65, 100), nal(0x41, 10), nal(0x41, 40)].concat();
    let map = subsamples(&avc(), &sample, 4).unwrap();
    // SPS: 4 + 20; IDR: 4 + 1 + 3 clear, 96 protected.
    // Then: 4 + 10 clear (short slice) + 4 + 1 + 7 clear, 32 protected.
    assert_eq!(map, [(24 + 8, 96), (14 + 12, 32)]);
    let clear: usize = map.iter().map(|m| usize::from(m.0) + m.1 as usize).sum();
    assert_eq!(clear, sample.len());
}

#[test]
fn long_clear_runs_are_split_into_16_bit_entries() {
    let mut out = Vec::new();
    push_subsample(&mut out, 70_000, 32);
    assert_eq!(out, [(65_535, 0), (4_465, 32)]);
}

#[test]
fn a_nal_running_past_its_sample_is_refused_not_a_panic() {
    let mut sample = nal(0x65, 40);
    sample.truncate(30);
    assert!(matches!(
        subsamples(&avc(), &sample, 4),
        Err(CencError::Malformed(_))
    ));
    assert!(matches!(
        parse(&[0, 0, 0, 99, b'm', b'o', b'o', b'f']),
        Err(CencError::Malformed(_))
    ));
    assert!(protect_init(b"\0\0\0\x08free", &KEY).is_err());
}

#[test]
fn the_key_never_prints() {
    let shown = format!("{KEY:?}");
    assert!(shown.contains(&hex(&KEY.kid)));
    assert!(!shown.contains(&hex(&KEY.key)), "{shown}");
}

/// ffmpeg's DASH output of a short clip with video and audio: (init, segments) per stream.
fn packaged(dir: &Path) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "4", "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "aac", "-f", "dash", "-seg_duration", "2"])
        .arg(dir.join("out.mpd"))
        .status()
        .unwrap();
    assert!(ok.success());
    (0..2)
        .map(|s| {
            let init = std::fs::read(dir.join(format!("init-stream{s}.m4s"))).unwrap();
            let mut segs = Vec::new();
            for n in 1.. {
                match std::fs::read(dir.join(format!("chunk-stream{s}-{n:05}.m4s"))) {
                    Ok(b) => segs.push(b),
                    Err(_) => break,
                }
            }
            assert!(!segs.is_empty());
            (init, segs)
        })
        .collect()
}

fn framemd5(file: &Path, key: Option<&Key>) -> Option<String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "quiet"]);
    if let Some(k) = key {
        cmd.args(["-decryption_key", &hex(&k.key)]);
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args(["-f", "framemd5", "-"])
        .output()
        .unwrap();
    out.status.success().then(|| {
        // Hashes only: the header lines name nothing that differs.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap_or("").trim().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn ffmpeg_decrypts_what_we_encrypt_and_cannot_decode_it_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut ivs = counter_ivs();
    for (stream, (init, segs)) in packaged(dir.path()).into_iter().enumerate() {
        let (enc_init, tracks) = protect_init(&init, &KEY).unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(
            tracks[0].1.nal_length.is_some(),
            stream == 0,
            "video first, then audio"
        );
        // Segment by segment, as a player's media source takes them (ffmpeg
        // loses count of encrypted samples across concatenated AAC fragments
        // with their edit list; each alone it decodes).
        for (n, seg) in segs.iter().enumerate() {
            let e = encrypt_segment(seg, &tracks, &KEY, &mut ivs).unwrap();
            assert_ne!(&e, seg);
            assert_eq!(
                &decrypt_segment(&e, &KEY).unwrap(),
                seg,
                "the round trip is exact"
            );
            let (c, p) = (dir.path().join("clear.mp4"), dir.path().join("enc.mp4"));
            std::fs::write(&c, [&init[..], seg].concat()).unwrap();
            std::fs::write(&p, [&enc_init[..], &e].concat()).unwrap();
            let want = framemd5(&c, None).expect("the clear segment decodes");
            assert!(want.lines().count() > 3, "stream {stream} segment {n}");
            assert_eq!(
                framemd5(&p, Some(&KEY)).as_deref(),
                Some(want.as_str()),
                "stream {stream} segment {n}: ffmpeg's CENC decryption gives the clear frames"
            );
            let wrong = Key {
                key: [7; 16],
                ..KEY
            };
            assert_ne!(framemd5(&p, Some(&wrong)).as_deref(), Some(want.as_str()));
            assert_ne!(
                framemd5(&p, None).as_deref(),
                Some(want.as_str()),
                "no key, no frames"
            );
        }
    }
}

#[test]
fn the_init_segment_signals_cenc_with_the_key_id_and_a_common_pssh() {
    let dir = tempfile::tempdir().unwrap();
    let streams = packaged(dir.path());
    let (enc, _) = protect_init(&streams[0].0, &KEY).unwrap();
    let find = |needle: &[u8]| enc.windows(needle.len()).position(|w| w == needle);
    assert!(
        find(b"encv").is_some() && find(b"avc1").is_some(),
        "frma keeps avc1"
    );
    assert!(find(b"schmcenc").is_some() || find(b"cenc").is_some());
    let tenc = find(b"tenc").unwrap();
    // full box (4), reserved (2), protected, IV size, then the key ID.
    assert_eq!(&enc[tenc + 4 + 4..tenc + 4 + 4 + 4], &[0, 0, 1, 8]);
    assert_eq!(&enc[tenc + 12..tenc + 28], &KEY.kid);
    let pssh = find(b"pssh").unwrap();
    assert_eq!(&enc[pssh + 8..pssh + 24], &COMMON_SYSTEM_ID);
    assert_eq!(&enc[pssh + 28..pssh + 44], &KEY.kid);
    // Protecting twice is refused.
    assert!(matches!(
        protect_init(&enc, &KEY),
        Err(CencError::Unsupported(_))
    ));
}

#[test]
fn hls_segments_with_video_and_audio_together_are_encrypted_track_by_track() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("ffmpeg")
        .current_dir(dir.path())
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "4", "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p",
        ])
        .args([
            "-c:a",
            "aac",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
        ])
        .args([
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ])
        .args(["-hls_segment_filename", "seg-%05d.m4s", "index.m3u8"])
        .status()
        .unwrap();
    assert!(ok.success());
    let init = std::fs::read(dir.path().join("init.mp4")).unwrap();
    let (enc_init, tracks) = protect_init(&init, &KEY).unwrap();
    assert_eq!(tracks.len(), 2, "video and audio in one init segment");
    let mut ivs = counter_ivs();
    for n in 0..2 {
        let seg = std::fs::read(dir.path().join(format!("seg-{n:05}.m4s"))).unwrap();
        let e = encrypt_segment(&seg, &tracks, &KEY, &mut ivs).unwrap();
        assert_eq!(decrypt_segment(&e, &KEY).unwrap(), seg);
        let (c, p) = (dir.path().join("clear.mp4"), dir.path().join("enc.mp4"));
        std::fs::write(&c, [&init[..], &seg].concat()).unwrap();
        std::fs::write(&p, [&enc_init[..], &e].concat()).unwrap();
        let want = framemd5(&c, None).unwrap();
        assert_eq!(
            framemd5(&p, Some(&KEY)).as_deref(),
            Some(want.as_str()),
            "segment {n}"
        );
        assert_ne!(framemd5(&p, None).as_deref(), Some(want.as_str()));
    }
}
