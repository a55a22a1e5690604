//! The rewrites, tested for what they promise: a rewritten manifest reads
//! again, lists exactly the kept renditions (every one of them, once per
//! pathway), and every URI in it is a plain object key under one of the
//! play's signed pathways.

use std::collections::HashSet;

use m3u8_rs::{MasterPlaylist, Playlist, QuotedOrUnquoted, VariantStream};
use quick_xml::events::Event;

use super::*;

mod dash;
mod hls;

/// ffmpeg's HLS packaging of t1 (scripts/make-content.sh): three muxed variants.
const T1_MASTER: &str = include_str!("../testdata/master.m3u8");
/// ffmpeg's DASH packaging of t1: three video AdaptationSets and one audio.
const T1_MPD: &str = include_str!("../testdata/manifest.mpd");
/// Hand-made: separate audio groups, subtitles, closed captions, I-frame variants.
const T2_MASTER: &str = include_str!("../testdata/audio-groups.m3u8");

const MASTER_KEY: &str = "titles/t1/master.m3u8";
const T2_KEY: &str = "titles/t2/master.m3u8";
const MPD_KEY: &str = "titles/t1/dash/manifest.mpd";
const A: &str = "http://127.0.0.1:8080/t/tok-a/";
const B: &str = "http://10.1.2.3:8080/t/tok-b/";
const EDGE_KEY: &str = "titles/t3/manifest.mpd";
const STEER: &str = "https://steer.example/v1/steer?play=p1&x=1";

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

/// The object key a URI names under one of `pathways`; panics (naming the URI)
/// if it is under none, or is not a plain key, or is not signed.
fn key_under(uri: &str, pathways: &[Pathway]) -> (String, String) {
    let p = pathways
        .iter()
        .find(|p| uri.starts_with(&p.base_url))
        .unwrap_or_else(|| panic!("URI {uri:?} is under no pathway"));
    assert!(p.base_url.contains("/t/tok-"), "{uri:?} is not signed");
    let key = &uri[p.base_url.len()..];
    assert!(
        !key.is_empty()
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['?', '#'])),
        "{uri:?}: {key:?} is not a plain object key"
    );
    (p.id.clone(), key.to_owned())
}

/// Properties of a rewritten multivariant playlist: it parses whole; every URI
/// (variants and renditions) is a kept rendition's key under a pathway; each
/// pathway carries the same variants, tagged with its PATHWAY-ID when there are
/// several pathways or steering; one steering tag exactly when asked for.
fn check_hls(
    out: &str,
    keep: &dyn Fn(&str) -> bool,
    ps: &[Pathway],
    steered: bool,
) -> MasterPlaylist {
    let m = match m3u8_rs::parse_playlist(out.as_bytes()) {
        Ok((rest, Playlist::MasterPlaylist(m))) => {
            assert!(
                rest.iter().all(u8::is_ascii_whitespace),
                "partly parses: {out}"
            );
            m
        }
        other => panic!("rewritten playlist does not parse ({other:?}): {out}"),
    };
    assert!(
        m.variants.iter().any(|v| !v.is_i_frame),
        "no variant: {out}"
    );
    let tagged = steered || ps.len() > 1;
    let mut per_pathway: Vec<Vec<(bool, String)>> = vec![Vec::new(); ps.len()];
    for v in &m.variants {
        let (p, key) = key_under(&v.uri, ps);
        assert!(keep(dir_of(&key)), "{key} was filtered out: {out}");
        assert_eq!(pathway_of(v), tagged.then(|| p.clone()), "{}", v.uri);
        let i = ps.iter().position(|x| x.id == p).unwrap();
        per_pathway[i].push((v.is_i_frame, key));
    }
    for a in &m.alternatives {
        if let Some(uri) = &a.uri {
            let (p, key) = key_under(uri, ps);
            assert!(keep(dir_of(&key)), "{key} was filtered out: {out}");
            if tagged {
                assert!(a.group_id.ends_with(&format!("@{p}")), "{a:?}");
            }
        }
    }
    assert!(
        per_pathway.windows(2).all(|w| w[0] == w[1]),
        "pathways carry different variants: {out}"
    );
    assert_eq!(steering_tags(&m).len(), usize::from(steered), "{out}");
    m
}

/// `(attributes, text)` of every MPD-level `name` element (BaseURL,
/// ContentSteering), read with quick-xml directly rather than the model under test.
fn top_level(xml: &str, name: &str) -> Vec<(Vec<(String, String)>, String)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0;
    let mut found = Vec::new();
    let mut current: Option<(Vec<(String, String)>, String)> = None;
    let attrs = |e: &quick_xml::events::BytesStart<'_>| {
        e.attributes()
            .map(|a| {
                let a = a.unwrap();
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap();
                (a.key.as_ref().to_owned(), v.into_owned())
            })
            .collect()
    };
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && e.local_name().as_ref() == name {
                    current = Some((attrs(&e), String::new()));
                }
            }
            Event::Empty(e) if depth == 1 && e.local_name().as_ref() == name => {
                found.push((attrs(&e), String::new()));
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

/// How many `name` elements the document has, at any depth.
fn count_elements(xml: &str, name: &str) -> usize {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut n = 0;
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => return n,
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == name => n += 1,
            _ => {}
        }
    }
}

/// Properties of a rewritten MPD: it reads again, with exactly the packaged
/// Representations `keep` accepts (unchanged); the only BaseURLs are one per
/// pathway at MPD level, primary first, each the pathway's base plus the MPD's
/// directory; every Representation's first segment resolves under each of them
/// to a kept rendition's key; one steering element exactly when asked for.
fn check_dash(
    out: &str,
    packaged: &str,
    key: &str,
    keep: &dyn Fn(&str) -> bool,
    ps: &[Pathway],
    steered: bool,
) -> DashManifest {
    let again = read_dash(out, key).unwrap_or_else(|e| panic!("does not read again ({e}): {out}"));
    let before = read_dash(packaged, key).unwrap();
    let kept: Vec<_> = before
        .representations
        .iter()
        .filter(|r| keep(&r.rendition))
        .cloned()
        .collect();
    assert_eq!(again.representations, kept, "{out}");
    assert_eq!(again.duration, before.duration);
    let bases = top_level(out, "BaseURL");
    let dir = match dir_of(key) {
        "" => String::new(),
        d => format!("{d}/"),
    };
    let want: Vec<(Vec<(String, String)>, String)> = ps
        .iter()
        .map(|p| {
            let attrs = vec![("serviceLocation".to_owned(), p.id.clone())];
            (attrs, format!("{}{dir}", p.base_url))
        })
        .collect();
    assert_eq!(bases, want, "{out}");
    assert_eq!(
        count_elements(out, "BaseURL"),
        ps.len(),
        "nested BaseURLs: {out}"
    );
    for r in &again.representations {
        let seg = expand_template(&r.media, &r.id, r.bandwidth, Some(r.start_number)).unwrap();
        for (_, base) in &bases {
            let (_, k) = key_under(&format!("{base}{seg}"), ps);
            assert_eq!(dir_of(&k), r.rendition);
            assert!(keep(&r.rendition));
        }
    }
    assert_eq!(
        top_level(out, "ContentSteering").len(),
        usize::from(steered),
        "{out}"
    );
    again
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

/// One resolver for import and plays: plain relative paths inside the title.
#[test]
fn uris_resolve_to_plain_keys_or_are_refused() {
    let ok = |u: &str| resolve("titles/t1", u).unwrap();
    assert_eq!(ok("v360/index.m3u8"), "titles/t1/v360/index.m3u8");
    assert_eq!(ok("./v360/./index.m3u8"), "titles/t1/v360/index.m3u8");
    assert_eq!(resolve("", "a/b").unwrap(), "a/b");
    for bad in [
        "",
        ".",
        "./",
        "/abs",
        "http://x/a",
        "../t2/a",
        "a/../b",
        "a//b",
        "a/",
        "a?b",
        "a#b",
        "a b",
        "a\"b",
        "a\\b",
        "a\u{1}b",
    ] {
        assert!(
            matches!(resolve("titles/t1", bad), Err(ManifestError::Packaged(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn xs_durations() {
    let d = crate::manifest::dash::xs_duration;
    assert_eq!(d("PT12.0S"), Some(12.0));
    assert_eq!(d("PT1H2M3.5S"), Some(3723.5));
    assert_eq!(d("P1DT1S"), Some(86_401.0));
    assert_eq!(d("P0Y0M0DT0H3M30.000S"), Some(210.0));
    for bad in ["", "P", "PT", "12S", "PT1S2M", "PT1X", "PT.S", "PTS", "P1S"] {
        assert_eq!(d(bad), None, "{bad:?}");
    }
}

/// Truncations and byte substitutions of every fixture give an error or a
/// manifest with every property above (never a panic, never a broken one), and
/// reading and rewriting an MPD agree on whether it is usable.
#[test]
fn mangled_input_is_refused_or_rewritten_soundly() {
    let ps = pathways(&[("a", A), ("b", B)]);
    let s = steering();
    let try_one = |bytes: &[u8]| {
        if let Ok(out) = hls_multivariant(bytes, MASTER_KEY, &all, &ps, Some(&s)) {
            check_hls(&out, &all, &ps, true);
        }
        let Ok(t) = std::str::from_utf8(bytes) else {
            return;
        };
        match (
            dash_renditions(t, MPD_KEY),
            dash_mpd(t, MPD_KEY, &all, &ps, Some(&s)),
        ) {
            (Ok(_), Ok(out)) => {
                check_dash(&out, t, MPD_KEY, &all, &ps, true);
            }
            (Ok(ids), Err(e)) => assert!(
                ids.is_empty() && matches!(e, ManifestError::NothingLeft),
                "read as {ids:?} but not rewritten: {e}"
            ),
            (Err(e), Ok(out)) => panic!("rewritten although unreadable ({e}): {out}"),
            (Err(_), Err(_)) => {}
        }
    };
    for text in [T1_MASTER, T2_MASTER, T1_MPD, EDGE_MPD] {
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            try_one(&bytes[..cut]);
        }
        for i in (0..bytes.len()).step_by(3) {
            for b in [b'"', b'<', b'$', b'\n', b'/', 0xff] {
                let mut m = bytes.to_vec();
                m[i] = b;
                try_one(&m);
            }
        }
    }
}

/// Every packaging fixture, for one and two pathways, with and without
/// steering, keeping everything or dropping each rendition in turn: the
/// rewrite has every property above, and every kept variant is on every pathway.
#[test]
fn every_kept_rendition_survives_on_every_pathway() {
    let one = pathways(&[("origin", A)]);
    let two = pathways(&[("app-1", A), ("origin", B)]);
    for (text, key) in [(T1_MASTER, MASTER_KEY), (T2_MASTER, T2_KEY)] {
        let packaged = parse_hls(text);
        let dir = dir_of(key);
        let variant_keys: Vec<(String, &VariantStream)> = packaged
            .variants
            .iter()
            .map(|v| (resolve(dir, &v.uri).unwrap(), v))
            .collect();
        let ids: HashSet<String> = variant_keys
            .iter()
            .map(|(k, _)| dir_of(k).to_owned())
            .collect();
        for drop in std::iter::once(None).chain(ids.iter().map(Some)) {
            let keep = |r: &str| Some(r) != drop.map(String::as_str);
            for ps in [&one, &two] {
                for steered in [false, true] {
                    let st = steered.then(steering);
                    let out = match hls_multivariant(text.as_bytes(), key, &keep, ps, st.as_ref()) {
                        Ok(out) => out,
                        Err(ManifestError::NothingLeft) => {
                            assert!(
                                variant_keys
                                    .iter()
                                    .all(|(k, v)| v.is_i_frame || !keep(dir_of(k)))
                            );
                            continue;
                        }
                        Err(e) => panic!("{key} without {drop:?}: {e}"),
                    };
                    let m = check_hls(&out, &keep, ps, steered);
                    let listed: HashSet<String> =
                        m.variants.iter().map(|v| v.uri.clone()).collect();
                    for (k, v) in &variant_keys {
                        // Variants relying on a rendition group may go with it
                        // (tested on their own); the rest must all be there.
                        let free = v.audio.is_none() && v.video.is_none();
                        if keep(dir_of(k)) && (free || drop.is_none()) {
                            for p in ps.iter() {
                                let uri = format!("{}{k}", p.base_url);
                                assert!(listed.contains(&uri), "{uri} missing: {out}");
                            }
                        }
                    }
                }
            }
        }
    }
    for (text, key) in [(T1_MPD, MPD_KEY), (EDGE_MPD, EDGE_KEY)] {
        let ids = dash_renditions(text, key).unwrap();
        for drop in std::iter::once(None).chain(ids.iter().map(Some)) {
            let keep = |r: &str| Some(r) != drop.map(String::as_str);
            for ps in [&one, &two] {
                for steered in [false, true] {
                    let st = steered.then(steering);
                    let out = dash_mpd(text, key, &keep, ps, st.as_ref()).unwrap();
                    let m = check_dash(&out, text, key, &keep, ps, steered);
                    let kept = ids.iter().filter(|r| keep(r)).count();
                    assert_eq!(dash_renditions(&out, key).unwrap().len(), kept);
                    assert!(m.representations.iter().all(|r| keep(&r.rendition)));
                }
            }
        }
    }
}
