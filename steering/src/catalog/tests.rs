use super::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn packaged() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write(
        p,
        "titles/t1/title.toml",
        "name = \"One\"\nregions = [\"eu\"]\nrelease = 1700000000\n",
    );
    write(
        p,
        "titles/t1/master.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\"\nlo/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n",
    );
    write(
        p,
        "titles/t1/lo/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\nseg-0.m4s\n#EXTINF:4,\nseg-1.m4s\n#EXT-X-ENDLIST\n",
    );
    write(p, "titles/t1/lo/init.mp4", "init");
    write(p, "titles/t1/lo/seg-0.m4s", "zero");
    write(p, "titles/t1/lo/seg-1.m4s", "one!");
    write(
        p,
        "titles/t1/audio/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na-0.ts\n#EXT-X-ENDLIST\n",
    );
    write(p, "titles/t1/audio/a-0.ts", "audio");
    d
}

#[test]
fn scans_titles_renditions_and_objects() {
    let d = packaged();
    let titles = scan(d.path()).unwrap();
    assert_eq!(titles.len(), 1);
    let t = &titles[0];
    assert_eq!(
        (t.id.as_str(), t.sidecar.name.as_str(), t.sidecar.release),
        ("t1", "One", Some(1_700_000_000))
    );
    let ids: Vec<_> = t.renditions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["titles/t1/audio", "titles/t1/lo"]);
    let lo = &t.renditions[1];
    assert_eq!(
        (
            lo.kind.as_str(),
            lo.width,
            lo.height,
            lo.container.as_str(),
            lo.segment_duration
        ),
        ("video", Some(640), Some(360), "fmp4", 4.0)
    );
    let keys: Vec<_> = lo.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "titles/t1/lo/index.m3u8",
            "titles/t1/lo/init.mp4",
            "titles/t1/lo/seg-0.m4s",
            "titles/t1/lo/seg-1.m4s"
        ]
    );
    assert_eq!(lo.objects[2].size, 4);
    let expect = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"zero"));
    assert_eq!(lo.objects[2].sha256, expect);
    assert_eq!(t.manifests[0].key, "titles/t1/master.m3u8");
    let audio = &t.renditions[0];
    assert_eq!(
        (audio.kind.as_str(), audio.container.as_str()),
        ("audio", "ts")
    );
}

#[test]
fn dash_templates_expand() {
    assert_eq!(
        manifest::expand_template(
            "r$RepresentationID$/chunk-$Number%05d$.m4s",
            "3",
            1,
            Some(7)
        )
        .unwrap(),
        "r3/chunk-00007.m4s"
    );
    assert_eq!(
        manifest::expand_template("$Bandwidth$/$Number$.mp4", "a", 96000, Some(12)).unwrap(),
        "96000/12.mp4"
    );
    assert_eq!(
        manifest::expand_template("init-$RepresentationID$.m4s", "v1", 0, None).unwrap(),
        "init-v1.m4s"
    );
    assert_eq!(
        manifest::expand_template("a$$b", "x", 0, None).unwrap(),
        "a$b"
    );
    assert!(manifest::expand_template("$Time$.m4s", "x", 0, Some(1)).is_none());
    assert!(manifest::expand_template("$Number$.m4s", "x", 0, None).is_none());
    assert!(manifest::expand_template("$RepresentationID", "x", 0, None).is_none());
}

#[test]
fn refuses_bad_packaging_naming_the_file() {
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("missing sidecar", "titles/t1/title.toml", "", "title.toml"),
        (
            "sidecar without name",
            "titles/t1/title.toml",
            "regions = []\n",
            "name",
        ),
        (
            "escaping URI",
            "titles/t1/master.m3u8",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n../../etc/index.m3u8\n",
            "relative path inside the title",
        ),
        (
            "absolute URI",
            "titles/t1/master.m3u8",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://x/index.m3u8\n",
            "relative path inside the title",
        ),
        (
            "media playlist as master",
            "titles/t1/master.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\ns.ts\n",
            "multivariant",
        ),
        ("missing segment", "titles/t1/lo/seg-1.m4s", "", "seg-1.m4s"),
        (
            "artwork that is not there",
            "titles/t1/title.toml",
            "name = \"T\"\nartwork = [\"poster.jpg\"]\n",
            "artwork \"poster.jpg\" is not in",
        ),
        (
            "artwork outside the title",
            "titles/t1/title.toml",
            "name = \"T\"\nartwork = [\"../../etc/x.jpg\"]\n",
            "file name in the title's directory",
        ),
        (
            "artwork that is not an image",
            "titles/t1/title.toml",
            "name = \"T\"\nartwork = [\"master.m3u8\"]\n",
            "file name in the title's directory",
        ),
    ];
    for (name, file, text, needle) in cases {
        let d = packaged();
        if text.is_empty() {
            std::fs::remove_file(d.path().join(file)).unwrap();
        } else {
            write(d.path(), file, text);
        }
        let err = scan(d.path()).unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: {err}");
    }
}

/// A packaged title with one rendition and the given multivariant playlist.
fn packaged_with_master(master: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("titles/t1");
    std::fs::create_dir_all(t.join("v360")).unwrap();
    std::fs::write(t.join("title.toml"), "name = \"t1\"\n").unwrap();
    std::fs::write(t.join("master.m3u8"), master).unwrap();
    std::fs::write(
        t.join("v360/index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg-00000.m4s\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    std::fs::write(t.join("v360/seg-00000.m4s"), b"moof").unwrap();
    dir
}

/// Found by fuzzing (fuzz/regressions/manifest): a `./v360/index.m3u8`
/// URI gave the rendition id `titles/t1/./v360`, which no appliance may
/// report and no per-play manifest names.
#[test]
fn dot_segments_do_not_reach_rendition_ids_or_keys() {
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=655600\n./v360/./index.m3u8\n";
    let titles = scan(packaged_with_master(master).path()).unwrap();
    let r = &titles[0].renditions[0];
    assert_eq!(r.id, "titles/t1/v360");
    assert!(crate::config::valid_rendition(&r.id));
    let keys: Vec<&str> = r.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        ["titles/t1/v360/index.m3u8", "titles/t1/v360/seg-00000.m4s"]
    );
}

/// Found by fuzzing (fuzz/regressions/manifest): import read MPDs with
/// another parser (dash-mpd-core), which took text after the root element
/// that the per-play rewrite refuses. One reader now serves both.
#[test]
fn an_mpd_plays_would_refuse_is_not_imported() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("titles/t1");
    std::fs::create_dir_all(t.join("dash/r0")).unwrap();
    std::fs::write(t.join("title.toml"), "name = \"t1\"\n").unwrap();
    for f in ["init.m4s", "chunk-00001.m4s"] {
        std::fs::write(t.join("dash/r0").join(f), b"moof").unwrap();
    }
    let mpd = "<MPD><Period><AdaptationSet><Representation id=\"0\" bandwidth=\"1\">\
<SegmentTemplate initialization=\"r$RepresentationID$/init.m4s\" \
media=\"r$RepresentationID$/chunk-$Number%05d$.m4s\" startNumber=\"1\"/>\
</Representation></AdaptationSet></Period></MPD>";
    std::fs::write(t.join("dash/manifest.mpd"), mpd).unwrap();
    let titles = scan(dir.path()).unwrap();
    assert_eq!(titles[0].renditions[0].id, "titles/t1/dash/r0");
    std::fs::write(t.join("dash/manifest.mpd"), format!("{mpd}\ntrailing text")).unwrap();
    let err = scan(dir.path()).unwrap_err().to_string();
    assert!(err.contains("text outside the XML root element"), "{err}");
}

/// Found by fuzzing (fuzz/regressions/manifest): an I-frame variant's
/// URI is not imported but is rewritten for plays, which refused it.
#[test]
fn a_playlist_with_an_unusable_iframe_uri_is_not_imported() {
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=655600\nv360/index.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=30000,URI=\"http://elsewhere.example/iframes.m3u8\"\n";
    let err = scan(packaged_with_master(master).path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not a relative path inside the title"),
        "{err}"
    );
}

/// Found by fuzzing (fuzz/regressions/manifest): m3u8-rs skipped a
/// malformed EXT-X-STREAM-INF, the title imported, and every play of it
/// then failed in the stricter per-play rewrite.
#[test]
fn a_playlist_plays_would_refuse_is_not_imported() {
    let good = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=655600,RESOLUTION=640x360\nv360/index.m3u8\n";
    let titles = scan(packaged_with_master(good).path()).unwrap();
    assert_eq!(titles[0].renditions[0].id, "titles/t1/v360");

    let broken = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=T-X-VERSION:7\n\
#EXT-X-STREAM-INF:BANDWIDTH=655600,RESOLUTION=640x360\nv360/index.m3u8\n";
    let err = scan(packaged_with_master(broken).path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed #EXT-X-STREAM-INF"), "{err}");
}
