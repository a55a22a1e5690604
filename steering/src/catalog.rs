//! The catalog: titles → renditions → objects, imported from packaged content
//! as a packager writes it (HLS multivariant + media playlists, parsed with
//! m3u8-rs), plus a `title.toml` sidecar for what manifests do not carry.
//!
//! Layout of a packaged directory (it doubles as an oca disk's `objects/`):
//!
//! ```text
//! DIR/titles/<title-id>/title.toml      name, regions, release (optional)
//! DIR/titles/<title-id>/master.m3u8     multivariant playlist
//! DIR/titles/<title-id>/<rendition>/…   media playlist, init segment, segments
//! ```
//!
//! A rendition's id is the directory of its media playlist relative to DIR
//! (`titles/t1/v720`); its objects are the init segment and media segments, keyed
//! by their path relative to DIR, each with size and SHA-256.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest;

/// What the sidecar says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub name: String,
    /// Regions where the title may be played (empty: nowhere yet).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Unix seconds before which the title may not be played.
    pub release: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub id: String,
    /// `video`, `audio` or `text`.
    pub kind: String,
    pub codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub bandwidth: u64,
    /// `fmp4` or `ts`.
    pub container: String,
    /// The manifest format that lists it: `hls` or `dash`.
    pub protocol: String,
    pub segment_duration: f64,
    pub objects: Vec<Object>,
}

#[derive(Debug, Clone)]
pub struct Title {
    pub id: String,
    pub sidecar: Sidecar,
    pub renditions: Vec<Rendition>,
    /// The packaged manifests, kept verbatim: per-play manifests are rewritten
    /// from them, so everything the packager wrote survives.
    pub manifests: Vec<PackagedManifest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackagedManifest {
    /// `hls` (multivariant playlist) or `dash` (MPD).
    pub kind: String,
    /// Its object key, against which its relative URIs resolve.
    pub key: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn bad(path: &Path, reason: impl Into<String>) -> CatalogError {
    CatalogError::Bad {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Read every title under `dir/titles/`.
pub fn scan(dir: &Path) -> Result<Vec<Title>, CatalogError> {
    let titles_dir = dir.join("titles");
    let mut entries: Vec<_> = std::fs::read_dir(&titles_dir)
        .map_err(io(&titles_dir))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut titles = Vec::new();
    for e in entries {
        let id = e.file_name().to_string_lossy().into_owned();
        if !crate::config::valid_id(&id) {
            return Err(bad(
                &e.path(),
                "title directory names use A-Z a-z 0-9 - _ .",
            ));
        }
        titles.push(scan_title(dir, &id)?);
    }
    Ok(titles)
}

fn scan_title(dir: &Path, id: &str) -> Result<Title, CatalogError> {
    let tdir = dir.join("titles").join(id);
    let sidecar_path = tdir.join("title.toml");
    let text = std::fs::read_to_string(&sidecar_path).map_err(io(&sidecar_path))?;
    let sidecar: Sidecar =
        toml::from_str(&text).map_err(|e| bad(&sidecar_path, e.message().replace('\n', " ")))?;
    let mut renditions = Vec::new();
    let mut manifests = Vec::new();
    let master_path = tdir.join("master.m3u8");
    if master_path.exists() {
        renditions.extend(scan_hls(dir, &master_path)?);
        manifests.push(packaged_manifest(dir, "hls", &master_path)?);
    }
    for mpd in [tdir.join("manifest.mpd"), tdir.join("dash/manifest.mpd")] {
        if mpd.exists()
            && !manifests
                .iter()
                .any(|m: &PackagedManifest| m.kind == "dash")
        {
            renditions.extend(scan_dash(dir, &mpd)?);
            manifests.push(packaged_manifest(dir, "dash", &mpd)?);
        }
    }
    if renditions.is_empty() {
        return Err(bad(&tdir, "no master.m3u8 or manifest.mpd with renditions"));
    }
    renditions.sort_by(|a, b| a.id.cmp(&b.id));
    for w in renditions.windows(2) {
        if w[0].id == w[1].id {
            return Err(bad(
                &tdir,
                format!(
                    "two renditions share the directory {}; give each its own",
                    w[0].id
                ),
            ));
        }
    }
    Ok(Title {
        id: id.to_owned(),
        sidecar,
        renditions,
        manifests,
    })
}

fn packaged_manifest(
    dir: &Path,
    kind: &str,
    path: &Path,
) -> Result<PackagedManifest, CatalogError> {
    let body = std::fs::read_to_string(path).map_err(io(path))?;
    let key = key_of(dir, path)?;
    Ok(PackagedManifest {
        kind: kind.to_owned(),
        key,
        body,
    })
}

fn scan_hls(dir: &Path, master_path: &Path) -> Result<Vec<Rendition>, CatalogError> {
    let bytes = std::fs::read(master_path).map_err(io(master_path))?;
    let master = match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        Ok(_) => {
            return Err(bad(
                master_path,
                "is a media playlist, expected a multivariant playlist",
            ));
        }
        Err(e) => {
            return Err(bad(
                master_path,
                format!("not a playlist: {e:?}")
                    .chars()
                    .take(200)
                    .collect::<String>(),
            ));
        }
    };
    let key = key_of(dir, master_path)?;
    let resolve = |uri: &str| manifest::resolve(manifest::dir_of(&key), uri);
    let mut renditions = Vec::new();
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        let media = resolve(&v.uri).map_err(|e| bad(master_path, e.to_string()))?;
        let codec = v.codecs.clone();
        let kind = match (&v.resolution, codec.as_deref()) {
            (None, Some(c))
                if !c.contains("avc1") && !c.contains("hvc1") && !c.contains("av01") =>
            {
                "audio"
            }
            _ => "video",
        };
        renditions.push(scan_media(
            dir,
            &media,
            kind,
            codec,
            v.resolution.map(|r| (r.width, r.height)),
            v.bandwidth,
        )?);
    }
    for alt in &master.alternatives {
        if let Some(uri) = &alt.uri {
            let media = resolve(uri).map_err(|e| bad(master_path, e.to_string()))?;
            let kind = match alt.media_type {
                m3u8_rs::AlternativeMediaType::Audio => "audio",
                m3u8_rs::AlternativeMediaType::Subtitles => "text",
                _ => "video",
            };
            renditions.push(scan_media(dir, &media, kind, None, None, 0)?);
        }
    }
    if renditions.is_empty() {
        return Err(bad(master_path, "lists no renditions"));
    }
    // Every play rewrites this file (`manifest::hls_multivariant`), more
    // strictly than the reading above: m3u8-rs skips a malformed
    // EXT-X-STREAM-INF quietly, and I-frame variants are not imported but
    // are rewritten. A playlist the rewrite refuses would import fine and
    // then fail every play, so try the rewrite now (found by fuzzing:
    // fuzz/regressions/manifest).
    manifest::hls_multivariant(&bytes, &key, &|_| true, &probe_pathway(), None)
        .map_err(|e| bad(master_path, e.to_string()))?;
    Ok(renditions)
}

/// The pathway an import tries the per-play rewrite with.
fn probe_pathway() -> [manifest::Pathway; 1] {
    [manifest::Pathway {
        id: "import".into(),
        base_url: "http://import.invalid/".into(),
    }]
}

/// The object key of a file under `dir`.
fn key_of(dir: &Path, path: &Path) -> Result<String, CatalogError> {
    relative(dir, path).ok_or_else(|| bad(path, "outside the packaged directory"))
}

/// DASH: one rendition per Representation, whose segments (SegmentTemplate with
/// `$RepresentationID$`, `$Bandwidth$` and `$Number$`) must live in a directory of
/// their own, so that an appliance's per-directory inventory names them. The MPD
/// is read by `manifest::read_dash`, the reader plays use too.
fn scan_dash(dir: &Path, mpd_path: &Path) -> Result<Vec<Rendition>, CatalogError> {
    let xml = std::fs::read_to_string(mpd_path).map_err(io(mpd_path))?;
    let key = key_of(dir, mpd_path)?;
    let unusable = |e: manifest::ManifestError| bad(mpd_path, e.to_string());
    let mpd = manifest::read_dash(&xml, &key).map_err(unusable)?;
    let mut out = Vec::new();
    for rep in &mpd.representations {
        let rid = &rep.id;
        let fill =
            |t: &str, number: Option<u64>| manifest::expand_template(t, rid, rep.bandwidth, number);
        let resolve = |uri: &str| manifest::resolve(manifest::dir_of(&key), uri);
        let mut keys = Vec::new();
        if let Some(init) = &rep.initialization {
            let uri = fill(init, None)
                .ok_or_else(|| bad(mpd_path, "unsupported initialization template"))?;
            keys.push(resolve(&uri).map_err(unusable)?);
        }
        // Count the segments the presentation needs, then take every one the
        // packager wrote (audio often runs a segment past the video).
        let seg_secs = rep.segment_duration;
        let expected = match (mpd.duration, seg_secs > 0.0) {
            (Some(t), true) => (t / seg_secs).floor() as u64,
            _ => 1,
        };
        let start = rep.start_number;
        let mut n = start;
        loop {
            let uri = fill(&rep.media, Some(n))
                .ok_or_else(|| bad(mpd_path, "unsupported media template"))?;
            let key = resolve(&uri).map_err(unusable)?;
            if !dir.join(&key).exists() {
                break;
            }
            keys.push(key);
            n += 1;
        }
        if n - start < expected.max(1) {
            return Err(bad(
                mpd_path,
                format!(
                    "representation {rid}: {} segment(s) on disk, {expected} expected",
                    n - start
                ),
            ));
        }
        let mut objects = Vec::new();
        for key in keys {
            if manifest::dir_of(&key) != rep.rendition {
                return Err(bad(
                    mpd_path,
                    format!("representation {rid}: segments span several directories"),
                ));
            }
            let (size, sha256) = hash_file(&dir.join(&key))?;
            objects.push(Object { key, size, sha256 });
        }
        let content = rep.content_type.as_deref().unwrap_or("video");
        let kind = if content.starts_with("audio") {
            "audio"
        } else if content.starts_with("text") || content.contains("vtt") || content.contains("ttml")
        {
            "text"
        } else {
            "video"
        };
        out.push(Rendition {
            id: rep.rendition.clone(),
            kind: kind.to_owned(),
            codec: rep.codecs.clone(),
            width: rep.width,
            height: rep.height,
            bandwidth: rep.bandwidth,
            container: "fmp4".to_owned(),
            protocol: "dash".to_owned(),
            segment_duration: seg_secs,
            objects,
        });
    }
    // As for HLS: an MPD the per-play rewrite refuses must fail the import,
    // not every play.
    manifest::dash_mpd(&xml, &key, &|_| true, &probe_pathway(), None).map_err(unusable)?;
    Ok(out)
}

/// A rendition from its media playlist (object key `media`): the playlist, its
/// init segment and segments, keyed by `manifest::resolve` as plays resolve them.
fn scan_media(
    dir: &Path,
    media: &str,
    kind: &str,
    codec: Option<String>,
    size: Option<(u64, u64)>,
    bandwidth: u64,
) -> Result<Rendition, CatalogError> {
    let path = dir.join(media);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let playlist = match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        _ => return Err(bad(&path, "not a media playlist")),
    };
    let id = manifest::dir_of(media).to_owned();
    let mut uris: Vec<String> = Vec::new();
    let mut container = "ts";
    for seg in &playlist.segments {
        if let Some(map) = &seg.map {
            container = "fmp4";
            if !uris.contains(&map.uri) {
                uris.push(map.uri.clone());
            }
        }
        if seg.uri.ends_with(".m4s") || seg.uri.ends_with(".mp4") {
            container = "fmp4";
        }
        if !uris.contains(&seg.uri) {
            uris.push(seg.uri.clone());
        }
    }
    if playlist.segments.is_empty() {
        return Err(bad(&path, "has no segments"));
    }
    // The media playlist is an object too: appliances serve it, and the
    // segment URIs in it resolve under the same signed prefix.
    let mut objects = Vec::with_capacity(uris.len() + 1);
    let (playlist_size, sha256) = hash_file(&path)?;
    objects.push(Object {
        key: media.to_owned(),
        size: playlist_size,
        sha256,
    });
    for uri in uris {
        let key = manifest::resolve(&id, &uri).map_err(|e| bad(&path, e.to_string()))?;
        let (size, sha256) = hash_file(&dir.join(&key))?;
        objects.push(Object { key, size, sha256 });
    }
    Ok(Rendition {
        id,
        kind: kind.to_owned(),
        codec,
        width: size.map(|s| s.0),
        height: size.map(|s| s.1),
        bandwidth,
        container: container.to_owned(),
        protocol: "hls".to_owned(),
        segment_duration: playlist.target_duration as f64,
        objects,
    })
}

fn relative(dir: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(dir).ok()?;
    let s = rel.to_str()?.to_owned();
    (!s.is_empty()).then_some(s)
}

fn hash_file(path: &Path) -> Result<(u64, String), CatalogError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    let hex = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

#[cfg(test)]
mod tests {
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
        let expect: String = ring::digest::digest(&ring::digest::SHA256, b"zero")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
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
        let good =
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=655600,RESOLUTION=640x360\nv360/index.m3u8\n";
        let titles = scan(packaged_with_master(good).path()).unwrap();
        assert_eq!(titles[0].renditions[0].id, "titles/t1/v360");

        let broken = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=T-X-VERSION:7\n\
#EXT-X-STREAM-INF:BANDWIDTH=655600,RESOLUTION=640x360\nv360/index.m3u8\n";
        let err = scan(packaged_with_master(broken).path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed #EXT-X-STREAM-INF"), "{err}");
    }
}
