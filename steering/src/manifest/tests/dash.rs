use super::*;

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

/// The attributes of every element named `name`, in document order.
fn attributes_of(xml: &str, name: &str) -> Vec<Vec<(String, String)>> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => return out,
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == name => {
                out.push(
                    e.attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let v = a.value.into_owned();
                            (a.key.as_ref().to_owned(), v)
                        })
                        .collect(),
                );
            }
            _ => {}
        }
    }
}

fn ids_of(xml: &str, name: &str) -> Vec<String> {
    attributes_of(xml, name)
        .into_iter()
        .filter_map(|attrs| attrs.into_iter().find(|(k, _)| k == "id").map(|(_, v)| v))
        .collect()
}

#[test]
fn dash_single_pathway_keeps_the_packaged_mpd() {
    let ps = pathways(&[("origin", A)]);
    let out = dash_mpd(T1_MPD, MPD_KEY, &all, &ps, None).unwrap();
    let mpd = check_dash(&out, T1_MPD, MPD_KEY, &all, &ps, false);
    assert_eq!(
        top_level(&out, "BaseURL"),
        [(
            vec![("serviceLocation".into(), "origin".into())],
            format!("{A}titles/t1/dash/")
        )]
    );
    // Everything else is what the packager wrote: the MPD's attributes, every
    // element below it but BaseURLs, and each Representation as read.
    for element in [
        "MPD",
        "ServiceDescription",
        "Period",
        "AdaptationSet",
        "Representation",
        "SegmentTemplate",
        "AudioChannelConfiguration",
    ] {
        assert_eq!(
            attributes_of(&out, element),
            attributes_of(T1_MPD, element),
            "{element}"
        );
    }
    assert_eq!(mpd.duration, Some(12.0));
    // A segment resolves to base_url + its object key.
    let rep = &mpd.representations[0];
    let seg = expand_template(&rep.media, &rep.id, rep.bandwidth, Some(1)).unwrap();
    assert_eq!(
        format!("{}{seg}", top_level(&out, "BaseURL")[0].1),
        format!("{A}titles/t1/dash/r0/chunk-00001.m4s")
    );
    assert_eq!(
        (
            rep.codecs.as_deref(),
            rep.width,
            rep.height,
            rep.segment_duration
        ),
        (Some("avc1.4d401e"), Some(640), Some(360), 4.0)
    );
}

#[test]
fn dash_filtered_representations_and_empty_sets_are_gone() {
    let keep = |r: &str| r != "titles/t1/dash/r1";
    let ps = pathways(&[("origin", A)]);
    let out = dash_mpd(T1_MPD, MPD_KEY, &keep, &ps, None).unwrap();
    check_dash(&out, T1_MPD, MPD_KEY, &keep, &ps, false);
    assert_eq!(ids_of(&out, "AdaptationSet"), ["0", "2", "3"]);
    assert_eq!(ids_of(&out, "Representation"), ["0", "2", "3"]);
}

#[test]
fn dash_pathways_and_steering() {
    let ps = pathways(&[("app-1", A), ("origin", B)]);
    let out = dash_mpd(T1_MPD, MPD_KEY, &all, &ps, Some(&steering())).unwrap();
    let mpd = check_dash(&out, T1_MPD, MPD_KEY, &all, &ps, true);
    let bases: Vec<_> = top_level(&out, "BaseURL")
        .into_iter()
        .map(|(attrs, text)| (attrs[0].1.clone(), text))
        .collect();
    assert_eq!(
        bases,
        [
            ("app-1".into(), format!("{A}titles/t1/dash/")),
            ("origin".into(), format!("{B}titles/t1/dash/"))
        ]
    );
    let cs = top_level(&out, "ContentSteering");
    assert_eq!(cs.len(), 1);
    let (attrs, uri) = &cs[0];
    assert_eq!(uri, STEER);
    assert!(attrs.contains(&("defaultServiceLocation".into(), "app-1".into())));
    assert!(attrs.contains(&("queryBeforeStart".into(), "false".into())));
    assert_eq!(mpd.representations.len(), 4);
}

#[test]
fn dash_edge_cases() {
    assert_eq!(
        dash_renditions(EDGE_MPD, EDGE_KEY).unwrap(),
        ["titles/t3/hd", "titles/t3/sd", "titles/t3/audio/b96000"]
    );
    let keep = |r: &str| r != "titles/t3/sd";
    let out = dash_mpd(
        EDGE_MPD,
        EDGE_KEY,
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
    assert_eq!(top_level(&out, "ContentSteering").len(), 1);
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

#[test]
fn a_protected_mpd_signals_cenc_and_clear_key_in_every_adaptation_set() {
    let ps = pathways(&[("origin", A)]);
    let out = dash_mpd(T1_MPD, MPD_KEY, &all, &ps, None).unwrap();
    let p = Protection {
        kid: [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ],
        licence_url: "http://s/v1/drm/p1/license?token=a&b".into(),
    };
    let protected = protect_mpd(&out, &p).unwrap();
    let sets = attributes_of(&protected, "AdaptationSet").len();
    let cps = attributes_of(&protected, "ContentProtection");
    assert_eq!(cps.len(), 2 * sets);
    let kid = (
        "cenc:default_KID".to_owned(),
        "01234567-89ab-cdef-0123-456789abcdef".to_owned(),
    );
    assert_eq!(cps.iter().filter(|a| a.contains(&kid)).count(), sets);
    let ck = (
        "schemeIdUri".to_owned(),
        "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e".to_owned(),
    );
    assert_eq!(cps.iter().filter(|a| a.contains(&ck)).count(), sets);
    // The licence URL, escaped as XML text, and the namespaces it needs.
    assert!(
        protected.contains("<dashif:laurl>http://s/v1/drm/p1/license?token=a&amp;b</dashif:laurl>")
    );
    let root = &attributes_of(&protected, "MPD")[0];
    assert!(root.contains(&("xmlns:cenc".into(), "urn:mpeg:cenc:2013".into())));
    assert!(root.contains(&("xmlns:dashif".into(), "https://dashif.org/CPS".into())));
    // Still the same title to our own reader: same renditions.
    assert_eq!(
        dash_renditions(&protected, MPD_KEY).unwrap(),
        dash_renditions(&out, MPD_KEY).unwrap()
    );
    // ContentProtection comes before the Representations of its set.
    let cp_at = protected.find("ContentProtection").unwrap();
    assert!(cp_at < protected.find("<Representation").unwrap());
}
