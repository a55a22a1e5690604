use m3u8_rs::{AlternativeMediaType, ClosedCaptionGroupId};

use super::*;

#[test]
fn hls_single_pathway_is_a_plain_playlist() {
    let out = hls_multivariant(
        T1_MASTER.as_bytes(),
        MASTER_KEY,
        &all,
        &pathways(&[("origin", A)]),
        None,
    )
    .unwrap();
    let m = parse_hls(&out);
    let packaged = parse_hls(T1_MASTER);
    assert_eq!(m.version, Some(7));
    assert_eq!(m.variants.len(), 3);
    for (v, p) in m.variants.iter().zip(&packaged.variants) {
        assert_eq!(v.uri, format!("{A}titles/t1/{}", p.uri));
        assert_eq!(pathway_of(v), None);
        assert_eq!(v.bandwidth, p.bandwidth);
        assert_eq!(v.resolution, p.resolution);
        assert_eq!(v.codecs, p.codecs);
    }
    assert!(steering_tags(&m).is_empty());
    assert!(!out.contains("PATHWAY-ID"), "{out}");
}

#[test]
fn hls_filtered_renditions_are_gone() {
    let keep = |r: &str| r != "titles/t1/v540";
    let out = hls_multivariant(
        T1_MASTER.as_bytes(),
        MASTER_KEY,
        &keep,
        &pathways(&[("origin", A)]),
        None,
    )
    .unwrap();
    let uris: Vec<_> = parse_hls(&out)
        .variants
        .into_iter()
        .map(|v| v.uri)
        .collect();
    assert_eq!(
        uris,
        [
            format!("{A}titles/t1/v360/index.m3u8"),
            format!("{A}titles/t1/v720/index.m3u8")
        ]
    );
}

#[test]
fn hls_pathways_duplicate_variants_and_groups_with_steering() {
    let ps = pathways(&[("app-1", A), ("origin", B)]);
    let out = hls_multivariant(T2_MASTER.as_bytes(), T2_KEY, &all, &ps, Some(&steering())).unwrap();
    let m = parse_hls(&out);
    let packaged = parse_hls(T2_MASTER);

    // Session-level tags survive; the packaged steering tag is replaced by ours.
    assert_eq!(m.version, Some(7));
    assert!(m.independent_segments);
    assert_eq!(m.session_data, packaged.session_data);
    assert_eq!(
        steering_tags(&m),
        [format!("SERVER-URI=\"{STEER}\",PATHWAY-ID=\"app-1\"")]
    );

    // Each variant (I-frame ones too) once per pathway, primary first.
    let n = packaged.variants.len();
    assert_eq!(m.variants.len(), 2 * n);
    for (i, v) in m.variants.iter().enumerate() {
        let (p, base) = if i < n { ("app-1", A) } else { ("origin", B) };
        let orig = &packaged.variants[i % n];
        assert_eq!(pathway_of(v).as_deref(), Some(p));
        let rel = orig.uri.trim_start_matches("./");
        assert_eq!(v.uri, format!("{base}titles/t2/{rel}"));
        assert_eq!(v.is_i_frame, orig.is_i_frame);
        assert_eq!(v.bandwidth, orig.bandwidth);
        assert_eq!(v.average_bandwidth, orig.average_bandwidth);
        assert_eq!(v.frame_rate, orig.frame_rate);
        assert_eq!(v.codecs, orig.codecs);
        assert_eq!(v.resolution, orig.resolution);
        assert_eq!(v.audio, orig.audio.as_ref().map(|g| format!("{g}@{p}")));
        assert_eq!(
            v.subtitles,
            orig.subtitles.as_ref().map(|g| format!("{g}@{p}"))
        );
        // Every group a pathway's variant names exists, and its renditions use that pathway.
        for (ty, group) in [
            (AlternativeMediaType::Audio, &v.audio),
            (AlternativeMediaType::Subtitles, &v.subtitles),
        ] {
            let Some(group) = group else { continue };
            let members: Vec<_> = m
                .alternatives
                .iter()
                .filter(|a| a.media_type == ty && &a.group_id == group)
                .collect();
            assert!(!members.is_empty(), "{group} missing");
            for a in members {
                assert!(a.uri.as_ref().unwrap().starts_with(base), "{a:?}");
            }
        }
    }
    assert_eq!(
        m.variants[0].closed_captions,
        Some(ClosedCaptionGroupId::GroupId("cc@app-1".into()))
    );

    // Alternatives once per pathway with suffixed groups and absolute URIs.
    assert_eq!(m.alternatives.len(), 2 * packaged.alternatives.len());
    let en = &m.alternatives[0];
    assert_eq!(en.group_id, "aac@app-1");
    assert_eq!(
        en.uri.as_deref(),
        Some(&*format!("{A}titles/t2/audio/en/index.m3u8"))
    );
    assert_eq!(en.language.as_deref(), Some("en"));
    assert!(en.default && en.autoselect);
    assert_eq!(en.channels.as_deref(), Some("2"));
    let cc: Vec<_> = m
        .alternatives
        .iter()
        .filter(|a| a.media_type == AlternativeMediaType::ClosedCaptions)
        .map(|a| (a.group_id.as_str(), a.uri.is_none()))
        .collect();
    assert_eq!(cc, [("cc@app-1", true), ("cc@origin", true)]);
    let last = m.alternatives.last().unwrap();
    assert!(last.group_id.ends_with("@origin"));
}

#[test]
fn hls_steering_with_one_pathway_still_tags_the_pathway() {
    let out = hls_multivariant(
        T1_MASTER.as_bytes(),
        MASTER_KEY,
        &all,
        &pathways(&[("app-1", A)]),
        Some(&steering()),
    )
    .unwrap();
    let m = parse_hls(&out);
    assert_eq!(m.variants.len(), 3);
    assert!(
        m.variants
            .iter()
            .all(|v| pathway_of(v).as_deref() == Some("app-1"))
    );
    assert_eq!(steering_tags(&m).len(), 1);
}

#[test]
fn hls_two_pathways_without_steering_have_no_steering_tag() {
    let ps = pathways(&[("app-1", A), ("app-2", B)]);
    let out = hls_multivariant(T1_MASTER.as_bytes(), MASTER_KEY, &all, &ps, None).unwrap();
    let m = parse_hls(&out);
    assert_eq!(m.variants.len(), 6);
    assert_eq!(pathway_of(&m.variants[3]).as_deref(), Some("app-2"));
    assert!(steering_tags(&m).is_empty());
}

#[test]
fn hls_emptied_groups_drop_or_detach_variants() {
    let ps = pathways(&[("origin", A)]);
    // Without 5.1 audio the AC-3 variant cannot play; without subtitles the rest can.
    let keep = |r: &str| r != "titles/t2/audio/en-51" && r != "titles/t2/subs/en";
    let m = parse_hls(&hls_multivariant(T2_MASTER.as_bytes(), T2_KEY, &keep, &ps, None).unwrap());
    let normal: Vec<_> = m.variants.iter().filter(|v| !v.is_i_frame).collect();
    assert_eq!(normal.len(), 2);
    assert!(normal.iter().all(|v| v.audio.as_deref() == Some("aac")));
    assert!(m.variants.iter().all(|v| v.subtitles.is_none()));
    assert!(m.alternatives.iter().all(|a| a.group_id != "ac3"));
    // No PATHWAY-ID and unsuffixed groups with a single pathway.
    assert!(m.variants.iter().all(|v| pathway_of(v).is_none()));
    assert_eq!(m.alternatives[0].group_id, "aac");

    // Dropping one language leaves the group, so every variant stays.
    let keep = |r: &str| r != "titles/t2/audio/de";
    let m = parse_hls(&hls_multivariant(T2_MASTER.as_bytes(), T2_KEY, &keep, &ps, None).unwrap());
    assert_eq!(m.variants.len(), 5);
    assert!(m.alternatives.iter().all(|a| a.name != "Deutsch"));
}

#[test]
fn hls_i_frame_variants_follow_their_rendition() {
    let keep = |r: &str| r != "titles/t2/v720";
    let out = hls_multivariant(
        T2_MASTER.as_bytes(),
        T2_KEY,
        &keep,
        &pathways(&[("origin", A)]),
        None,
    )
    .unwrap();
    let m = parse_hls(&out);
    let uris: Vec<_> = m
        .variants
        .iter()
        .map(|v| (v.is_i_frame, v.uri.as_str()))
        .collect();
    assert_eq!(
        uris,
        [
            (false, &*format!("{A}titles/t2/v360/index.m3u8")),
            (true, &*format!("{A}titles/t2/v360/iframes.m3u8")),
        ]
    );
}

#[test]
fn hls_errors() {
    let ps = pathways(&[("origin", A)]);
    let run = |text: &[u8], keep: &dyn Fn(&str) -> bool, ps: &[Pathway]| {
        hls_multivariant(text, MASTER_KEY, keep, ps, None)
    };
    for garbage in [
        &b""[..],
        b"\x00\xff\xfe garbage",
        b"<?xml version=\"1.0\"?><MPD/>",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg-1.m4s\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"avc1\"\nv/index.m3u8\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n\xff\xfe\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://elsewhere/v/index.m3u8\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n../t2/v/index.m3u8\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
        // Found by fuzzing (fuzz/regressions/manifest): control bytes in an
        // attribute list were written back as a playlist that no longer
        // parsed as a multivariant one.
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CO\0DECS=\"a\0\"\nv/index.m3u8\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\x1b\nv/index.m3u8\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a\rb\"\nv/index.m3u8\n",
        // Found by fuzzing (fuzz/regressions/manifest): unbalanced quotes and
        // stray lines were written back as a playlist with other variants and
        // URIs (one under no pathway).
        b"#EXTM3U\n#EXT-X-VERSION:7LANGUAGE\n\
#EXT-X-STRE1M-INF:BANDWIDTH=655600,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\"\n\
v360/index.m3u8\n\n\
#EXT-X-STREAM-INF:BANDWIDTH=1425600,UTRLOSEION=960x540,CODECS=\"avc1.4d401f,mp4a.40.2-TARG:URI=\"in#EXTINF:4.000000,\n\
seg-00000.m4s\n#EXTINF:4.0AP:URI=\"in#EXTINF:4.000000,\nseg-00000.m4s\n#EXTINF:4.000index.m3u8\n\n",
    ] {
        let r = run(garbage, &all, &ps);
        assert!(
            matches!(r, Err(ManifestError::Packaged(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    assert!(matches!(
        run(T1_MASTER.as_bytes(), &all, &[]),
        Err(ManifestError::NoPathways)
    ));
    assert!(matches!(
        run(T1_MASTER.as_bytes(), &|_| false, &ps),
        Err(ManifestError::NothingLeft)
    ));
    for bad in [
        pathways(&[("a\"b", A)]),
        pathways(&[("", A)]),
        pathways(&[("a", "http://127.0.0.1/no-slash")]),
        pathways(&[("a", "relative/")]),
        pathways(&[("a", "http://x/a\"b/")]),
        pathways(&[("a", A), ("a", B)]),
    ] {
        assert!(
            matches!(
                run(T1_MASTER.as_bytes(), &all, &bad),
                Err(ManifestError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    let bad_steer = ContentSteering {
        server_uri: "https://x/\n#EXT-X-EVIL".into(),
    };
    assert!(matches!(
        hls_multivariant(
            T1_MASTER.as_bytes(),
            MASTER_KEY,
            &all,
            &ps,
            Some(&bad_steer)
        ),
        Err(ManifestError::Invalid(_))
    ));
}

#[test]
fn hls_unmodelled_attributes_must_be_well_formed() {
    // Written back in a HashMap's order, a malformed one could read back as
    // another attribute list in some orders only: refused, whatever the order.
    let with = |attr: &str| {
        T1_MASTER.replacen(
            "#EXT-X-STREAM-INF:",
            &format!("#EXT-X-STREAM-INF:{attr},"),
            1,
        )
    };
    let ps = pathways(&[("origin", A)]);
    for ok in ["X-VENDOR=\"a b\"", "SCORE=1.5", "X-2=ENUM-VALUE"] {
        let out = hls_multivariant(with(ok).as_bytes(), MASTER_KEY, &all, &ps, None);
        assert!(out.is_ok(), "{ok}: {out:?}");
    }
    for bad in ["x-lower=1", "SUB&TITLES=\"s\"", "EPENDENT-=a b"] {
        let out = hls_multivariant(with(bad).as_bytes(), MASTER_KEY, &all, &ps, None);
        assert!(out.is_err(), "{bad} was accepted");
    }
}

#[test]
fn a_protected_master_names_its_session_key_once_before_the_variants() {
    let ps = pathways(&[("origin", A)]);
    let out = hls_multivariant(T1_MASTER.as_bytes(), MASTER_KEY, &all, &ps, None).unwrap();
    let protected = protect_master(&out, &[1; 16]);
    let key_line = protected
        .lines()
        .position(|l| l.starts_with("#EXT-X-SESSION-KEY:"))
        .expect("a session key");
    assert_eq!(protected.matches("#EXT-X-SESSION-KEY").count(), 1);
    let first_variant = protected
        .lines()
        .position(|l| l.starts_with("#EXT-X-STREAM-INF"))
        .unwrap();
    assert!(key_line < first_variant);
    let line = protected.lines().nth(key_line).unwrap();
    assert!(line.contains("METHOD=SAMPLE-AES-CTR"));
    assert!(line.contains("KEYFORMAT=\"org.w3.clearkey\""));
    assert!(line.contains("base64,AQEBAQEBAQEBAQEBAQEBAQ=="), "{line}");
    // Still a multivariant playlist players (and m3u8-rs) read, with the key.
    let parsed = m3u8_rs::parse_master_playlist_res(protected.as_bytes()).unwrap();
    assert_eq!(parsed.session_key.len(), 1);
    assert_eq!(
        parsed.variants.len(),
        m3u8_rs::parse_master_playlist_res(out.as_bytes())
            .unwrap()
            .variants
            .len()
    );
}
