use super::*;

use proptest::prelude::*;

/// A per-play multivariant playlist as steering wrote it (three pathways).
const STEERING_MASTER: &str = include_str!("testdata/steering-master.m3u8");
/// ffmpeg's packaged multivariant playlist (scripts/make-content.sh before it used oca-pack).
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

/// A media playlist model's text, written with m3u8-rs (as steering writes):
/// segments `(name, eighths of a second, EXT-X-MAP starting here)`.
fn write_media(segments: &[(String, u32, Option<String>)]) -> Vec<u8> {
    let pl = m3u8_rs::MediaPlaylist {
        version: Some(7),
        target_duration: segments
            .iter()
            .map(|s| u64::from(s.1).div_ceil(8))
            .max()
            .unwrap_or(1),
        end_list: true,
        segments: segments
            .iter()
            .map(|(name, eighths, map)| m3u8_rs::MediaSegment {
                uri: name.clone(),
                duration: *eighths as f32 / 8.0,
                map: map.as_ref().map(|uri| m3u8_rs::Map {
                    uri: uri.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    pl.write_to(&mut out).unwrap();
    out
}

/// A multivariant playlist's text, written with m3u8-rs: each pathway's
/// variants in the order given, and a content-steering tag when `primary`.
fn write_multivariant(pathways: &[(String, Vec<(u64, String)>)], primary: Option<&str>) -> Vec<u8> {
    let variants = pathways
        .iter()
        .flat_map(|(id, ladder)| {
            ladder
                .iter()
                .map(move |(bandwidth, uri)| m3u8_rs::VariantStream {
                    uri: uri.clone(),
                    bandwidth: *bandwidth,
                    other_attributes: (id != DEFAULT_PATHWAY).then(|| {
                        [(
                            "PATHWAY-ID".to_owned(),
                            QuotedOrUnquoted::Quoted(id.clone()),
                        )]
                        .into()
                    }),
                    ..Default::default()
                })
        })
        .collect();
    let pl = m3u8_rs::MasterPlaylist {
        version: Some(7),
        variants,
        unknown_tags: primary
            .map(|p| m3u8_rs::ExtTag {
                tag: "X-CONTENT-STEERING".into(),
                rest: Some(format!("SERVER-URI=\"/steer/x/hls\",PATHWAY-ID=\"{p}\"")),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    pl.write_to(&mut out).unwrap();
    out
}

fn pathway_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,6}"
}

proptest! {
    /// A media playlist written from a model parses back to that model:
    /// every segment, its duration, its URL resolved against where the
    /// playlist came from, and the EXT-X-MAP in effect for it.
    #[test]
    fn media_playlists_round_trip(segments in proptest::collection::vec(
        ("[a-z0-9_-]{1,8}\\.m4s", 1..400u32, proptest::option::weighted(0.3, "[a-z0-9_]{1,6}\\.mp4")),
        1..20,
    )) {
        let base = url("http://h:8080/t/tok/titles/t1/v1/index.m3u8");
        let media = parse_media(&write_media(&segments), &base).unwrap();
        let mut init = None;
        let want: Vec<Segment> = segments
            .iter()
            .map(|(name, eighths, map)| {
                if let Some(m) = map {
                    init = Some(url(&format!("http://h:8080/t/tok/titles/t1/v1/{m}")));
                }
                Segment {
                    url: url(&format!("http://h:8080/t/tok/titles/t1/v1/{name}")),
                    duration: Duration::from_millis(u64::from(*eighths) * 125),
                    init: init.clone(),
                }
            })
            .collect();
        prop_assert_eq!(&media.segments, &want);
        let eighths: u64 = segments.iter().map(|s| u64::from(s.1)).sum();
        prop_assert_eq!(media.total(), Duration::from_millis(eighths * 125));
    }

    /// Seeking anywhere lands on the segment holding the position, which
    /// starts where the ones before it end; past the end, on none.
    #[test]
    fn seek_lands_on_the_segment_holding_the_position(
        eighths in proptest::collection::vec(1..400u32, 1..20),
        at in 0..4000u64,
    ) {
        let segments: Vec<_> = eighths.iter().enumerate().map(|(i, e)| (format!("s{i}.m4s"), *e, None)).collect();
        let media = parse_media(&write_media(&segments), &url("http://h/m.m3u8")).unwrap();
        let position = Duration::from_millis(at * 25);
        let (i, start) = media.seek(position);
        prop_assert!(i <= media.segments.len());
        prop_assert_eq!(start, media.segments[..i].iter().map(|s| s.duration).sum::<Duration>());
        if i == media.segments.len() {
            prop_assert!(position >= media.total());
        } else {
            prop_assert!(start <= position && position < start + media.segments[i].duration);
        }
    }

    /// A multivariant playlist written from a model parses back to it: the
    /// pathways in playlist order, each ladder by ascending bandwidth however
    /// the playlist listed it, URLs resolved, and the steering tag's primary
    /// pathway and server.
    #[test]
    fn multivariant_playlists_round_trip(
        ids in proptest::collection::btree_set(pathway_id(), 1..4),
        default_pathway in any::<bool>(),
        rungs in proptest::collection::btree_set(1..50_000_000u64, 1..6),
        reversed in any::<bool>(),
        primary in any::<proptest::sample::Index>(),
    ) {
        let mut ids: Vec<String> = ids.into_iter().collect();
        if default_pathway {
            ids = vec![DEFAULT_PATHWAY.to_owned()];
        }
        // Ascending bandwidths (a set), one URI per rung and pathway.
        let model: Vec<(String, Vec<(u64, String)>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), rungs.iter().map(|bw| (*bw, format!("p{i}/v{bw}/index.m3u8"))).collect()))
            .collect();
        let written: Vec<(String, Vec<(u64, String)>)> = model
            .iter()
            .map(|(id, ladder)| {
                let mut l = ladder.clone();
                if reversed {
                    l.reverse();
                }
                (id.clone(), l)
            })
            .collect();
        let primary = (!default_pathway).then(|| ids[primary.index(ids.len())].as_str());
        let base = url("http://s:7000/v1/plays/p/master.m3u8");
        let m = parse_multivariant(&write_multivariant(&written, primary), &base).unwrap();
        let want: Vec<(String, Vec<Variant>)> = model
            .iter()
            .map(|(id, ladder)| {
                let ladder = ladder
                    .iter()
                    .map(|(bw, uri)| Variant { bandwidth: *bw, url: url(&format!("http://s:7000/v1/plays/p/{uri}")) })
                    .collect();
                (id.clone(), ladder)
            })
            .collect();
        prop_assert_eq!(&m.pathways, &want);
        prop_assert_eq!(m.primary.as_deref(), primary);
        prop_assert_eq!(
            m.steering.map(|u| u.to_string()),
            primary.map(|_| "http://s:7000/steer/x/hls".to_owned())
        );
    }

    /// The chosen pathway is one the playlist has and that has not failed;
    /// none only when every one has; steering's priority first, then the
    /// primary, then playlist order.
    #[test]
    fn the_chosen_pathway_is_available_and_not_failed(
        available in proptest::collection::btree_set(pathway_id(), 1..5),
        priority in proptest::collection::vec(pathway_id(), 0..5),
        primary in proptest::option::of(pathway_id()),
        failed in proptest::collection::vec(pathway_id(), 0..5),
        fail_all in any::<bool>(),
    ) {
        let available: Vec<String> = available.into_iter().collect();
        let failed = if fail_all { available.clone() } else { failed };
        let usable = |p: &str| available.iter().any(|a| a == p) && !failed.iter().any(|f| f == p);
        let got = pick_pathway(available.iter().map(String::as_str), &priority, primary.as_deref(), &failed);
        match got {
            Some(p) => prop_assert!(usable(p), "{p} chosen"),
            None => prop_assert!(!available.iter().any(|a| usable(a))),
        }
        let want = priority
            .iter()
            .map(String::as_str)
            .chain(primary.as_deref())
            .chain(available.iter().map(String::as_str))
            .find(|p| usable(p));
        prop_assert_eq!(got, want);
    }

    /// Whatever an appliance or steering sends, parsing ends in an error or
    /// in a value a player can use: segments to fetch, ladders of variants in
    /// ascending bandwidth on distinct pathways, a TTL no shorter than the floor.
    #[test]
    fn arbitrary_bytes_parse_to_usable_values_or_errors(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let base = url("http://h/p/m.m3u8");
        let mut text = b"#EXTM3U\n".to_vec();
        text.extend_from_slice(&body);
        check_usable(&text, &base)?;
        if let Ok(s) = parse_steering(&body, &base) {
            prop_assert!(s.ttl >= MIN_TTL);
        }
    }

    /// Playlist-shaped lines in any order and with any values.
    #[test]
    fn arbitrary_tag_soup_parses_to_usable_values_or_errors(lines in proptest::collection::vec(
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
        check_usable(text.as_bytes(), &base)?;
    }
}

/// What a parsed playlist promises the player, whatever the input was.
fn check_usable(text: &[u8], base: &Url) -> Result<(), TestCaseError> {
    if let Ok(m) = parse_media(text, base) {
        prop_assert!(!m.segments.is_empty());
        prop_assert_eq!(
            m.total(),
            m.segments.iter().map(|s| s.duration).sum::<Duration>()
        );
    }
    if let Ok(m) = parse_multivariant(text, base) {
        prop_assert!(!m.pathways.is_empty());
        let mut ids: Vec<&str> = m.pathway_ids().collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), m.pathways.len(), "pathway ids repeat");
        for (_, ladder) in &m.pathways {
            prop_assert!(!ladder.is_empty());
            prop_assert!(ladder.windows(2).all(|w| w[0].bandwidth <= w[1].bandwidth));
        }
    }
    Ok(())
}

#[test]
fn clear_key_ids_come_from_ext_x_key_data_uris() {
    let base = Url::parse("http://a/titles/t1/v360/index.m3u8").unwrap();
    let pl = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n\
#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\",URI=\"data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw==\"\n\
#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:4,\nseg-00000.m4s\n#EXTINF:4,\nseg-00001.m4s\n#EXT-X-ENDLIST\n";
    let m = parse_media(pl, &base).unwrap();
    let kid: Vec<u8> = (0..16).collect();
    assert_eq!(
        m.clear_key_ids,
        [<[u8; 16]>::try_from(kid.as_slice()).unwrap()]
    );
    assert_eq!(m.segments.len(), 2);
    let clear = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.m4s\n#EXT-X-ENDLIST\n";
    assert!(parse_media(clear, &base).unwrap().clear_key_ids.is_empty());
    let broken = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n\
#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"org.w3.clearkey\",URI=\"https://k\"\n\
#EXTINF:4,\nseg.m4s\n#EXT-X-ENDLIST\n";
    assert!(parse_media(broken, &base).is_err());
}
