use super::*;

use proptest::prelude::*;

/// A per-play multivariant playlist as steering wrote it (three pathways).
const STEERING_MASTER: &str = include_str!("testdata/steering-master.m3u8");
/// ffmpeg's packaged multivariant playlist (scripts/make-content.sh).
const FFMPEG_MASTER: &str = include_str!("testdata/ffmpeg-master.m3u8");
/// ffmpeg's fMP4 media playlist.
const FFMPEG_MEDIA: &str = include_str!("testdata/ffmpeg-media.m3u8");

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn steering_multivariant_has_a_ladder_per_pathway() {
    let base = url("http://127.0.0.1:42837/v1/plays/555b/master.m3u8");
    let m = parse_multivariant(STEERING_MASTER.as_bytes(), &base).unwrap();
    let ids: Vec<&str> = m.pathway_ids().collect();
    assert_eq!(ids, ["oca-a1", "oca-a2", "oca-x1"]);
    assert_eq!(m.primary.as_deref(), Some("oca-a1"));
    assert_eq!(
        m.steering.as_ref().unwrap().to_string(),
        "http://127.0.0.1:42837/v1/steering/555b0f9a0e9a2bfbac188f3ce546fa93/hls"
    );
    for (id, port) in [("oca-a1", 34279), ("oca-a2", 43445), ("oca-x1", 43565)] {
        let ladder = m.ladder(id).unwrap();
        let bw: Vec<u64> = ladder.iter().map(|v| v.bandwidth).collect();
        assert_eq!(bw, [655_600, 1_425_600, 2_855_600], "{id}");
        assert!(ladder.iter().all(|v| v.url.port == port));
        assert!(ladder[2].url.path.ends_with("/titles/t1/v720/index.m3u8"));
    }
    assert_eq!(m.ladder("oca-b1"), None);
}

#[test]
fn packaged_multivariant_is_one_default_pathway() {
    let base = url("http://o/titles/t1/master.m3u8");
    let m = parse_multivariant(FFMPEG_MASTER.as_bytes(), &base).unwrap();
    assert_eq!(m.pathway_ids().collect::<Vec<_>>(), [DEFAULT_PATHWAY]);
    assert_eq!((m.primary.clone(), m.steering.clone()), (None, None));
    let ladder = m.ladder(DEFAULT_PATHWAY).unwrap();
    assert_eq!(
        ladder[0].url.to_string(),
        "http://o/titles/t1/v360/index.m3u8"
    );
}

#[test]
fn ladders_are_sorted_and_i_frames_skipped() {
    let text = "#EXTM3U\n\
        #EXT-X-STREAM-INF:BANDWIDTH=3000000\nhi.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=500000\nlo.m3u8\n\
        #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1000,URI=\"if.m3u8\"\n";
    let m = parse_multivariant(text.as_bytes(), &url("http://h/a/m.m3u8")).unwrap();
    let ladder = m.ladder(DEFAULT_PATHWAY).unwrap();
    let paths: Vec<&str> = ladder.iter().map(|v| v.url.path.as_str()).collect();
    assert_eq!(paths, ["/a/lo.m3u8", "/a/hi.m3u8"]);
}

#[test]
fn ffmpeg_media_playlist() {
    let base = url("http://a1/t/tok/titles/t1/v360/index.m3u8");
    let m = parse_media(FFMPEG_MEDIA.as_bytes(), &base).unwrap();
    assert_eq!(m.segments.len(), 3);
    assert_eq!(m.total(), Duration::from_secs(12));
    for (i, s) in m.segments.iter().enumerate() {
        assert_eq!(s.url.path, format!("/t/tok/titles/t1/v360/seg-0000{i}.m4s"));
        assert_eq!(s.duration, Duration::from_secs(4));
        // EXT-X-MAP applies to every segment after it.
        assert_eq!(
            s.init.as_ref().unwrap().path,
            "/t/tok/titles/t1/v360/init_0.mp4"
        );
    }
}

#[test]
fn maps_change_and_durations_vary() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n\
        #EXTINF:3.5,\na.ts\n\
        #EXT-X-MAP:URI=\"i1.mp4\"\n#EXTINF:4,\nb.m4s\n#EXTINF:0.5,\nc.m4s\n\
        #EXT-X-MAP:URI=\"/x/i2.mp4\"\n#EXTINF:4.0,\nd.m4s\n#EXT-X-ENDLIST\n";
    let m = parse_media(text.as_bytes(), &url("http://h/p/m.m3u8")).unwrap();
    let inits: Vec<Option<&str>> = m
        .segments
        .iter()
        .map(|s| s.init.as_ref().map(|u| u.path.as_str()))
        .collect();
    assert_eq!(
        inits,
        [
            None,
            Some("/p/i1.mp4"),
            Some("/p/i1.mp4"),
            Some("/x/i2.mp4")
        ]
    );
    assert_eq!(m.total(), Duration::from_secs(12));
    // Seeking lands on the segment holding the position.
    let s = Duration::from_secs_f64;
    assert_eq!(m.seek(s(0.0)), (0, s(0.0)));
    assert_eq!(m.seek(s(3.5)), (1, s(3.5)));
    assert_eq!(m.seek(s(7.9)), (2, s(7.5)));
    assert_eq!(m.seek(s(8.0)), (3, s(8.0)));
    assert_eq!(m.seek(s(99.0)), (4, s(12.0)));
}

#[test]
fn bad_playlists_are_errors() {
    let base = url("http://h/m.m3u8");
    let media_cases: &[(&str, &str)] = &[
        ("", "no #EXTM3U"),
        ("<html>nope</html>", "no #EXTM3U"),
        ("#EXTM3U\n", "no segments"),
        (FFMPEG_MASTER, "multivariant playlist where a media"),
        (
            "#EXTM3U\n#EXTINF:4,\n#EXT-X-BYTERANGE:100@0\na.ts\n",
            "BYTERANGE",
        ),
        ("#EXTM3U\n#EXTINF:4,\nhttp://h/a b.ts\n", "segment URI"),
        ("#EXTM3U\n#EXTINF:4,\nftp://h/a.ts\n", "segment URI"),
        (
            "#EXTM3U\n#EXT-X-I-FRAMES-ONLY\n#EXTINF:4,\na.ts\n",
            "I-frame",
        ),
    ];
    for (text, want) in media_cases {
        let e = format!("{:#}", parse_media(text.as_bytes(), &base).unwrap_err());
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let master_cases: &[(&str, &str)] = &[
        ("garbage", "no #EXTM3U"),
        (FFMPEG_MEDIA, "media playlist where a multivariant"),
        // m3u8-rs drops a variant without BANDWIDTH.
        (
            "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na.m3u8\n",
            "no variants",
        ),
        (
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"a/b\"\na.m3u8\n",
            "pathway id",
        ),
        (
            "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"i.m3u8\"\n",
            "no variants",
        ),
        (
            "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"x\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
            "unclosed quote",
        ),
    ];
    for (text, want) in master_cases {
        let e = format!(
            "{:#}",
            parse_multivariant(text.as_bytes(), &base).unwrap_err()
        );
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn steering_answers() {
    let base = url("http://s/v1/steering/p/hls");
    let s = parse_steering(
        br#"{"PATHWAY-PRIORITY":["oca-a1","oca-a2","oca-x1"],"TTL":1,"VERSION":1}"#,
        &base,
    )
    .unwrap();
    assert_eq!(s.priority, ["oca-a1", "oca-a2", "oca-x1"]);
    assert_eq!((s.ttl, s.reload), (Duration::from_secs(1), None));
    let s = parse_steering(
        br#"{"VERSION":1,"TTL":0,"RELOAD-URI":"next?x=1","PATHWAY-PRIORITY":[]}"#,
        &base,
    )
    .unwrap();
    assert_eq!(s.ttl, MIN_TTL, "a zero TTL would be a busy loop");
    assert_eq!(s.reload.unwrap().path, "/v1/steering/p/next?x=1");
    let s = parse_steering(br#"{"VERSION":1,"PATHWAY-PRIORITY":["a"]}"#, &base).unwrap();
    assert_eq!(s.ttl, Duration::from_secs(300));
    for bad in [
        &b"not json"[..],
        br#"{"VERSION":2,"TTL":1,"PATHWAY-PRIORITY":[]}"#,
        br#"{"VERSION":1,"TTL":-1,"PATHWAY-PRIORITY":[]}"#,
        br#"{"VERSION":1,"TTL":1}"#,
        br#"{"VERSION":1,"PATHWAY-PRIORITY":["a b"]}"#,
        br#"{"VERSION":1,"PATHWAY-PRIORITY":[],"RELOAD-URI":"gopher://x"}"#,
    ] {
        assert!(
            parse_steering(bad, &base).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn pathway_choice_table() {
    let avail = ["a1", "a2", "x1"];
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (priority, primary, failed, expected)
    let table: &[(&[&str], Option<&str>, &[&str], Option<&str>)] = &[
        (&["a2", "a1"], Some("a1"), &[], Some("a2")), // steering first
        (&[], Some("a2"), &[], Some("a2")),           // no answer: the primary
        (&[], None, &[], Some("a1")),                 // nothing: playlist order
        (&["b1", "x1"], Some("a1"), &[], Some("x1")), // unknown ids skipped
        (&["a1", "a2"], Some("a1"), &["a1"], Some("a2")), // failover
        (&["a1"], Some("a1"), &["a1"], Some("a2")),   // then playlist order
        (&["a1", "a2", "x1"], None, &["a1", "a2", "x1"], None),
    ];
    for &(prio, primary, failed, want) in table {
        let prio = v(prio);
        let got = pick_pathway(avail.iter().copied(), &prio, primary, &v(failed));
        assert_eq!(got, want, "{prio:?} {primary:?} {failed:?}");
    }
}

#[test]
fn attribute_lists() {
    let a = attributes(r#"SERVER-URI="http://s/x?a=1,b=2",PATHWAY-ID="p", X=Y"#).unwrap();
    assert_eq!(a["SERVER-URI"], "http://s/x?a=1,b=2");
    assert_eq!((a["PATHWAY-ID"].as_str(), a["X"].as_str()), ("p", "Y"));
    assert!(attributes("").unwrap().is_empty());
    for bad in ["A", r#"A="x"B=1"#, r#"A="x"#] {
        assert!(attributes(bad).is_err(), "{bad}");
    }
}

proptest! {
    /// Whatever an appliance or steering sends, parsing ends in a value or an
    /// error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let base = url("http://h/p/m.m3u8");
        let mut text = b"#EXTM3U\n".to_vec();
        text.extend_from_slice(&body);
        let _ = parse_media(&text, &base);
        let _ = parse_multivariant(&text, &base);
        let _ = parse_steering(&body, &base);
    }

    /// Playlist-shaped lines in any order and with any values.
    #[test]
    fn arbitrary_tag_soup_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("#EXTINF:4.0,".to_owned()),
            "#EXTINF:[0-9.e-]{0,8},?",
            "#EXT-X-MAP:URI=\"[a-z./:]{0,10}\"(,BYTERANGE=\"[0-9@]{0,5}\")?",
            "#EXT-X-STREAM-INF:BANDWIDTH=[0-9]{0,8}(,PATHWAY-ID=\"[a-z.\\- ]{0,4}\")?",
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"[a-z:/]{0,8}\"?,PATHWAY-ID=[a-z\"]{0,3}",
            "[a-z0-9./:?#% ]{0,16}",
        ],
        0..12,
    )) {
        let base = url("http://h/p/m.m3u8");
        let text = format!("#EXTM3U\n{}\n", lines.join("\n"));
        let _ = parse_media(text.as_bytes(), &base);
        let _ = parse_multivariant(text.as_bytes(), &base);
    }
}
