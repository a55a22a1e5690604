use super::*;

use m3u8_rs::{AlternativeMediaType, VariantStream};

/// ffmpeg's HLS packaging of t1 (scripts/make-content.sh): three muxed variants.
const T1_MASTER: &str = include_str!("testdata/master.m3u8");
/// ffmpeg's DASH packaging of t1: three video AdaptationSets and one audio.
const T1_MPD: &str = include_str!("testdata/manifest.mpd");
/// Hand-made: separate audio groups, subtitles, closed captions, I-frame variants.
const T2_MASTER: &str = include_str!("testdata/audio-groups.m3u8");

const MASTER_KEY: &str = "titles/t1/master.m3u8";
const T2_KEY: &str = "titles/t2/master.m3u8";
const MPD_KEY: &str = "titles/t1/dash/manifest.mpd";
const A: &str = "http://127.0.0.1:8080/t/tok-a/";
const B: &str = "http://10.1.2.3:8080/t/tok-b/";
const STEER: &str = "https://steer.example/v1/steer?play=p1&x=1";

fn pathways(ids: &[(&str, &str)]) -> Vec<Pathway> {
    ids.iter()
        .map(|(id, base)| Pathway {
            id: (*id).into(),
            base_url: (*base).into(),
        })
        .collect()
}

fn steering() -> ContentSteering {
    ContentSteering {
        server_uri: STEER.into(),
    }
}

fn all(_: &str) -> bool {
    true
}

fn parse_hls(text: &str) -> MasterPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a multivariant playlist: {other:?}\n{text}"),
    }
}

fn pathway_of(v: &VariantStream) -> Option<String> {
    v.other_attributes
        .as_ref()
        .and_then(|a| a.get("PATHWAY-ID"))
        .map(|p| match p {
            QuotedOrUnquoted::Quoted(s) | QuotedOrUnquoted::Unquoted(s) => s.clone(),
        })
}

fn steering_tags(m: &MasterPlaylist) -> Vec<String> {
    m.unknown_tags
        .iter()
        .filter(|t| t.tag == "X-CONTENT-STEERING")
        .map(|t| t.rest.clone().unwrap_or_default())
        .collect()
}

// ------------------------------------------------------------------------------- HLS

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

// ------------------------------------------------------------------------------ DASH

/// MPD-level `<ContentSteering>` (attributes, text), which dash-mpd-core does not model.
fn content_steering(xml: &str) -> Vec<(Vec<(String, String)>, String)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0;
    let mut found = Vec::new();
    let mut current: Option<(Vec<(String, String)>, String)> = None;
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && e.local_name().as_ref() == "ContentSteering" {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let v = a
                                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap();
                            (a.key.as_ref().to_owned(), v.into_owned())
                        })
                        .collect();
                    current = Some((attrs, String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, text)) = current.as_mut() {
                    let name = r.xml10_content();
                    text.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap());
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth == 1 {
                    found.extend(current.take());
                }
            }
            _ => {}
        }
    }
    found
}

fn parse_mpd_back(xml: &str) -> dash_mpd_core::MPD {
    dash_mpd_core::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

#[test]
fn dash_renditions_in_document_order() {
    assert_eq!(
        dash_renditions(T1_MPD, MPD_KEY).unwrap(),
        [
            "titles/t1/dash/r0",
            "titles/t1/dash/r1",
            "titles/t1/dash/r2",
            "titles/t1/dash/r3"
        ]
    );
}

#[test]
fn dash_single_pathway_keeps_the_packaged_mpd() {
    let out = dash_mpd(T1_MPD, MPD_KEY, &all, &pathways(&[("origin", A)]), None).unwrap();
    let mpd = parse_mpd_back(&out);
    let packaged = parse_mpd_back(T1_MPD);
    assert_eq!(mpd.base_url.len(), 1);
    assert_eq!(mpd.base_url[0].serviceLocation.as_deref(), Some("origin"));
    assert_eq!(mpd.base_url[0].base, format!("{A}titles/t1/dash/"));
    assert!(content_steering(&out).is_empty());
    // Everything else is what the packager wrote.
    assert_eq!(mpd.periods, packaged.periods);
    assert_eq!(
        mpd.mediaPresentationDuration,
        packaged.mediaPresentationDuration
    );
    assert_eq!(mpd.minBufferTime, packaged.minBufferTime);
    assert_eq!(mpd.profiles, packaged.profiles);
    assert_eq!(mpd.mpdtype, packaged.mpdtype);
    assert_eq!(mpd.ServiceDescription, packaged.ServiceDescription);
    // A segment resolves to base_url + its object key.
    let rep = &mpd.periods[0].adaptations[0].representations[0];
    let tpl = rep.SegmentTemplate.as_ref().unwrap();
    let seg = expand_template(tpl.media.as_ref().unwrap(), "0", 500000, Some(1)).unwrap();
    assert_eq!(
        format!("{}{seg}", mpd.base_url[0].base),
        format!("{A}titles/t1/dash/r0/chunk-00001.m4s")
    );
}

#[test]
fn dash_filtered_representations_and_empty_sets_are_gone() {
    let keep = |r: &str| r != "titles/t1/dash/r1";
    let out = dash_mpd(T1_MPD, MPD_KEY, &keep, &pathways(&[("origin", A)]), None).unwrap();
    let mpd = parse_mpd_back(&out);
    let ids: Vec<_> = mpd.periods[0]
        .adaptations
        .iter()
        .map(|a| a.id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["0", "2", "3"]);
    let reps: Vec<_> = mpd.periods[0]
        .adaptations
        .iter()
        .flat_map(|a| &a.representations)
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(reps, ["0", "2", "3"]);
}

#[test]
fn dash_pathways_and_steering() {
    let ps = pathways(&[("app-1", A), ("origin", B)]);
    let out = dash_mpd(T1_MPD, MPD_KEY, &all, &ps, Some(&steering())).unwrap();
    let mpd = parse_mpd_back(&out);
    let bases: Vec<_> = mpd
        .base_url
        .iter()
        .map(|b| (b.serviceLocation.clone().unwrap(), b.base.clone()))
        .collect();
    assert_eq!(
        bases,
        [
            ("app-1".into(), format!("{A}titles/t1/dash/")),
            ("origin".into(), format!("{B}titles/t1/dash/"))
        ]
    );
    let cs = content_steering(&out);
    assert_eq!(cs.len(), 1);
    let (attrs, uri) = &cs[0];
    assert_eq!(uri, STEER);
    assert!(attrs.contains(&("defaultServiceLocation".into(), "app-1".into())));
    assert!(attrs.contains(&("queryBeforeStart".into(), "false".into())));
    assert_eq!(mpd.periods[0].adaptations.len(), 4);
}

/// Packaged BaseURLs (absolute and relative, at any level) and a packaged steering
/// element are replaced; SegmentTemplate attributes inherit from outer levels; a
/// namespace-prefixed MPD gets prefixed elements.
const EDGE_MPD: &str = r#"<?xml version="1.0"?>
<!-- packaged by hand -->
<d:MPD xmlns:d="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8S" minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <d:ProgramInformation><d:Title>Tom &amp; Jerry</d:Title></d:ProgramInformation>
  <d:BaseURL>http://origin.example/content/</d:BaseURL>
  <d:ContentSteering defaultServiceLocation="old">http://old.example/steer</d:ContentSteering>
  <d:Period id="p0">
    <d:SegmentTemplate timescale="1000" duration="4000" startNumber="7"/>
    <d:AdaptationSet contentType="video" mimeType="video/mp4">
      <d:BaseURL>video/</d:BaseURL>
      <d:SegmentTemplate media="$RepresentationID$/seg-$Number%03d$.m4s" initialization="$RepresentationID$/init.mp4"/>
      <d:Representation id="hd" bandwidth="3000000" codecs="avc1.4d401f" width="1280" height="720"/>
      <d:Representation id="sd" bandwidth="800000" codecs="avc1.4d401e" width="640" height="360">
        <d:BaseURL>sd/</d:BaseURL>
      </d:Representation>
    </d:AdaptationSet>
    <d:AdaptationSet contentType="audio" mimeType="audio/mp4">
      <d:Representation id="aud" bandwidth="96000" codecs="mp4a.40.2">
        <d:SegmentTemplate media="audio/b$Bandwidth$/$Number$.m4s" startNumber="0"/>
      </d:Representation>
    </d:AdaptationSet>
  </d:Period>
</d:MPD>"#;

#[test]
fn dash_edge_cases() {
    assert_eq!(
        dash_renditions(EDGE_MPD, "titles/t3/manifest.mpd").unwrap(),
        ["titles/t3/hd", "titles/t3/sd", "titles/t3/audio/b96000"]
    );
    let keep = |r: &str| r != "titles/t3/sd";
    let out = dash_mpd(
        EDGE_MPD,
        "titles/t3/manifest.mpd",
        &keep,
        &pathways(&[("app-1", A)]),
        Some(&steering()),
    )
    .unwrap();
    assert!(
        !out.contains("origin.example") && !out.contains("old.example"),
        "{out}"
    );
    assert!(!out.contains("video/<") && !out.contains(">sd/<"), "{out}");
    assert!(
        out.contains("<d:BaseURL serviceLocation=\"app-1\">"),
        "{out}"
    );
    assert!(out.contains("Tom &amp; Jerry"), "{out}");
    assert!(out.contains("<!-- packaged by hand -->"), "{out}");
    assert!(!out.contains("id=\"sd\""), "{out}");
    assert_eq!(content_steering(&out).len(), 1);
    // BaseURL sits after ProgramInformation, ContentSteering right after it.
    let pi = out.find("</d:ProgramInformation>").unwrap();
    let base = out.find("<d:BaseURL").unwrap();
    let cs = out.find("<d:ContentSteering").unwrap();
    let period = out.find("<d:Period").unwrap();
    assert!(pi < base && base < cs && cs < period, "{out}");
    // Steering URIs with '&' are escaped in XML and read back intact.
    assert!(out.contains("play=p1&amp;x=1"), "{out}");
}

#[test]
fn dash_errors() {
    let ps = pathways(&[("origin", A)]);
    let run = |text: &str, keep: &dyn Fn(&str) -> bool, ps: &[Pathway]| {
        dash_mpd(text, MPD_KEY, keep, ps, None)
    };
    let deep = "<MPD>".to_owned() + &"<a>".repeat(100_000);
    for garbage in [
        "",
        "not xml at all",
        "\u{0}\u{1}garbage<<<>>>",
        "<MPD><Period></MPD>",
        "<MPD>",
        "<MPD/><MPD/>",
        "<NotMPD><Period/></NotMPD>",
        "<MPD></MPD>trailing",
        deep.as_str(),
        r#"<MPD><Period><AdaptationSet><Representation bandwidth="1"><SegmentTemplate media="$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="a"><SegmentBase indexRange="0-99"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="a"><SegmentTemplate media="a/$Time$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="a"><SegmentTemplate media="../x/$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="a" bandwidth="lots"><SegmentTemplate media="a/$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="a" id="b"><SegmentTemplate media="a/$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
        r#"<MPD><Period><AdaptationSet><Representation id="&bogus;"><SegmentTemplate media="a/$Number$.m4s"/></Representation></AdaptationSet></Period></MPD>"#,
    ] {
        let r = run(garbage, &all, &ps);
        assert!(
            matches!(r, Err(ManifestError::Packaged(_))),
            "{:?}: {r:?}",
            garbage.get(..80).unwrap_or(garbage)
        );
        assert!(dash_renditions(garbage, MPD_KEY).is_err());
    }
    assert!(matches!(
        run("<MPD><Period/></MPD>", &all, &ps),
        Err(ManifestError::NothingLeft)
    ));
    assert!(matches!(
        run(T1_MPD, &all, &[]),
        Err(ManifestError::NoPathways)
    ));
    assert!(matches!(
        run(T1_MPD, &|_| false, &ps),
        Err(ManifestError::NothingLeft)
    ));
    assert!(matches!(
        run(T1_MPD, &all, &pathways(&[("a b", A)])),
        Err(ManifestError::Invalid(_))
    ));
}

// ------------------------------------------------------------------------------ shared

#[test]
fn expand_template_rules() {
    let e = |t: &str, n: Option<u64>| expand_template(t, "v1", 128000, n);
    assert_eq!(
        e("r$RepresentationID$/c-$Number%05d$.m4s", Some(3)).as_deref(),
        Some("rv1/c-00003.m4s")
    );
    assert_eq!(
        e("$Bandwidth$/$Number$", Some(12)).as_deref(),
        Some("128000/12")
    );
    assert_eq!(e("$Bandwidth%09d$", None).as_deref(), Some("000128000"));
    assert_eq!(e("a$$b", None).as_deref(), Some("a$b"));
    assert_eq!(e("init.mp4", None).as_deref(), Some("init.mp4"));
    assert_eq!(e("$Number$", None), None);
    assert_eq!(e("$Time$.m4s", Some(1)), None);
    assert_eq!(e("$Number", Some(1)), None);
    assert_eq!(e("$Number%0999999999d$", Some(1)), None);
}

/// Truncations and byte substitutions of every fixture must give a result or an error,
/// never a panic.
#[test]
fn mangled_input_never_panics() {
    let ps = pathways(&[("a", A), ("b", B)]);
    let s = steering();
    for text in [T1_MASTER, T2_MASTER, T1_MPD, EDGE_MPD] {
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let _ = hls_multivariant(&bytes[..cut], MASTER_KEY, &all, &ps, Some(&s));
            if let Ok(t) = std::str::from_utf8(&bytes[..cut]) {
                let _ = dash_mpd(t, MPD_KEY, &all, &ps, Some(&s));
                let _ = dash_renditions(t, MPD_KEY);
            }
        }
        for i in (0..bytes.len()).step_by(3) {
            for b in [b'"', b'<', b'$', b'\n', b'/', 0xff] {
                let mut m = bytes.to_vec();
                m[i] = b;
                let _ = hls_multivariant(&m, MASTER_KEY, &all, &ps, Some(&s));
                if let Ok(t) = std::str::from_utf8(&m) {
                    let _ = dash_mpd(t, MPD_KEY, &all, &ps, Some(&s));
                }
            }
        }
    }
}
