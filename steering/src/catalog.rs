//! The catalog: titles → renditions → objects, imported from packaged content
//! as a packager writes it (HLS multivariant + media playlists, parsed with
//! m3u8-rs), plus a `title.toml` sidecar for what manifests do not carry.
//!
//! Layout of a packaged directory (it doubles as an oca disk's `objects/`):
//!
//! ```text
//! DIR/titles/<title-id>/title.toml      name, regions, release and audience (optional)
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
    /// Expected first-day plays of a launch relative to the region's most
    /// watched title (1.0: as big as it; 0.1: a tenth), for the demand
    /// forecast before the title has plays of its own.
    #[serde(default)]
    pub audience: Option<f64>,
    /// Images in the title's directory (`poster.jpg`, ...), by file name:
    /// browse hands out their URLs.
    #[serde(default)]
    pub artwork: Vec<String>,
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
    for name in &sidecar.artwork {
        let image = [".jpg", ".jpeg", ".png", ".webp"]
            .iter()
            .any(|x| name.to_ascii_lowercase().ends_with(x));
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.');
        if !image || !plain {
            return Err(bad(
                &sidecar_path,
                format!(
                    "artwork {name:?}: a .jpg, .png or .webp file name in the title's directory"
                ),
            ));
        }
        if !tdir.join(name).is_file() {
            return Err(bad(
                &sidecar_path,
                format!("artwork {name:?} is not in {}", tdir.display()),
            ));
        }
    }
    if sidecar
        .audience
        .is_some_and(|a| !(a.is_finite() && (0.0..=100.0).contains(&a)))
    {
        return Err(bad(&sidecar_path, "audience must be between 0 and 100"));
    }
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
    Ok((size, hex::encode(ctx.finish())))
}

#[cfg(test)]
mod tests;
