//! `manifest`: steering's packaged-manifest handling: the catalog import
//! (`catalog::scan` over a packaged directory) and the per-play rewrites
//! (`hls_multivariant`, `dash_renditions`, `dash_mpd`).
//!
//! Input: the text of one manifest, as a packager writes it. It goes through
//! both rewrites, and into a packaged directory (real ffmpeg media playlists
//! and segments around it) that the catalog then imports: as `master.m3u8`
//! if it is a multivariant playlist, as `v360/index.m3u8` if it is a media
//! playlist, as `dash/manifest.mpd` if it looks like XML.
//!
//! Properties:
//! - nothing panics or hangs (libFuzzer's -timeout);
//! - a rewritten HLS playlist parses again, every URI in it is a kept
//!   rendition's key under one of the play's pathways, and steering tags
//!   appear exactly when asked for;
//! - a rewritten MPD is well-formed XML with one BaseURL per pathway, and
//!   defines exactly the kept renditions of the packaged one;
//! - what the catalog imports is safe and servable: rendition ids are ones
//!   steering accepts in heartbeats, object keys lie inside the title and
//!   name the files that were hashed, and every manifest it keeps can be
//!   rewritten for a play (import must not accept what plays then refuse).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use steering::catalog::{self, Title};
use steering::manifest::{
    ContentSteering, ManifestError, Pathway, dash_mpd, dash_renditions, hls_multivariant,
};

const MASTER_KEY: &str = "titles/t1/master.m3u8";
const MPD_KEY: &str = "titles/t1/dash/manifest.mpd";

fn pathways(n: usize) -> Vec<Pathway> {
    [
        ("oca-1", "http://127.0.0.1:8080/t/dG9rZW4.c2ln/"),
        ("origin", "https://origin.example.net/"),
        ("oca-2.ixp", "http://[::1]:8443/t/dG9rZW4.c2ln/"),
    ]
    .iter()
    .take(n)
    .map(|(id, base)| Pathway {
        id: (*id).into(),
        base_url: (*base).into(),
    })
    .collect()
}

fn steering_server() -> ContentSteering {
    ContentSteering {
        server_uri: "https://steering.example.net/v1/steer?session=abc".into(),
    }
}

pub fn run(data: &[u8]) {
    rewrite_hls(data);
    if let Ok(text) = std::str::from_utf8(data) {
        rewrite_dash(text);
    }
    import(data);
}

/// The play variants every rewrite is tried with: (pathways, steering, a
/// rendition to drop).
fn plays() -> [(usize, bool, Option<&'static str>); 3] {
    [
        (1, false, None),
        (2, true, Some("titles/t1/v540")),
        (3, false, Some("titles/t1/dash/r1")),
    ]
}

fn dir_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

fn rewrite_hls(data: &[u8]) {
    for (n, steered, drop) in plays() {
        let ps = pathways(n);
        let steering = steered.then(steering_server);
        let keep = |r: &str| Some(r) != drop;
        let Ok(out) = hls_multivariant(data, MASTER_KEY, &keep, &ps, steering.as_ref()) else {
            continue;
        };
        check_hls_output(&out, &ps, steering.is_some(), &keep);
    }
}

fn check_hls_output(out: &str, ps: &[Pathway], steered: bool, keep: &dyn Fn(&str) -> bool) {
    let master = match m3u8_rs::parse_playlist(out.as_bytes()) {
        Ok((rest, m3u8_rs::Playlist::MasterPlaylist(m))) => {
            assert!(
                rest.iter().all(u8::is_ascii_whitespace),
                "rewritten playlist only partly parses: {out}"
            );
            m
        }
        other => panic!("rewritten playlist does not parse ({other:?}): {out}"),
    };
    let split = |uri: &str| -> String {
        let p = ps
            .iter()
            .find(|p| uri.starts_with(&p.base_url))
            .unwrap_or_else(|| panic!("URI {uri:?} is under no pathway"));
        let key = &uri[p.base_url.len()..];
        assert!(
            !key.contains("://")
                && key
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".."),
            "key {key:?} is not a plain object key"
        );
        assert!(
            keep(dir_of(key)),
            "{key:?} was filtered out but is still listed"
        );
        p.id.clone()
    };
    assert!(
        master.variants.iter().any(|v| !v.is_i_frame),
        "no variant left: {out}"
    );
    for v in &master.variants {
        let pathway = split(&v.uri);
        let tagged = v
            .other_attributes
            .as_ref()
            .and_then(|a| a.get("PATHWAY-ID"))
            .map(|q| q.as_str().to_owned());
        let steered_here = steered || ps.len() > 1;
        assert_eq!(
            tagged,
            steered_here.then_some(pathway),
            "PATHWAY-ID of {}",
            v.uri
        );
    }
    for a in &master.alternatives {
        if let Some(uri) = &a.uri {
            split(uri);
        }
    }
    let tags = master
        .unknown_tags
        .iter()
        .filter(|t| t.tag == "X-CONTENT-STEERING")
        .count();
    assert_eq!(
        tags,
        usize::from(steered),
        "EXT-X-CONTENT-STEERING tags: {out}"
    );
}

fn rewrite_dash(text: &str) {
    let Ok(ids) = dash_renditions(text, MPD_KEY) else {
        return;
    };
    for (n, steered, drop) in plays() {
        let ps = pathways(n);
        let steering = steered.then(steering_server);
        let keep = |r: &str| Some(r) != drop;
        match dash_mpd(text, MPD_KEY, &keep, &ps, steering.as_ref()) {
            Ok(out) => {
                let kept: Vec<String> = ids.iter().filter(|r| keep(r)).cloned().collect();
                match dash_renditions(&out, MPD_KEY) {
                    Ok(again) => assert_eq!(again, kept, "renditions after the rewrite: {out}"),
                    Err(e) => panic!("rewritten MPD is unusable ({e}): {out}"),
                }
                check_base_urls(&out, ps.len());
            }
            Err(ManifestError::NothingLeft) => {
                assert!(ids.iter().all(|r| !keep(r)), "{ids:?} all dropped?");
            }
            Err(e) => panic!("dash_renditions accepted what dash_mpd refuses: {e}"),
        }
    }
}

/// Well-formed, with one BaseURL per pathway at the MPD level.
fn check_base_urls(out: &str, pathways: usize) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(out);
    let mut depth = 0usize;
    let mut base_urls = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                if depth == 1 && e.local_name().as_ref() == "BaseURL" {
                    base_urls += 1;
                }
                depth += 1;
            }
            Ok(Event::Empty(e)) => {
                if depth == 1 && e.local_name().as_ref() == "BaseURL" {
                    base_urls += 1;
                }
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(_) => {}
            Err(e) => panic!("rewritten MPD is not XML ({e}): {out}"),
        }
    }
    assert_eq!(depth, 0);
    assert_eq!(base_urls, pathways, "MPD-level BaseURLs: {out}");
}

// ----- Catalog import -----

/// A packaged directory made once per process: a title with the sidecar,
/// three HLS renditions and four DASH ones (playlists as ffmpeg wrote them,
/// segments with stand-in bytes), and no manifest yet.
struct Packaged {
    root: PathBuf,
    media_playlist: Vec<u8>,
}

thread_local! {
    static PACKAGED: Packaged = Packaged::create();
}

const MEDIA_PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"init_0.mp4\"
#EXTINF:4.000000,
seg-00000.m4s
#EXTINF:4.000000,
seg-00001.m4s
#EXTINF:4.000000,
seg-00002.m4s
#EXT-X-ENDLIST
";

const MASTER: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=655600,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\"
v360/index.m3u8
";

impl Packaged {
    fn create() -> Packaged {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("cdn-fuzz-manifest-{}", std::process::id()));
        // A directory left by an earlier process with the same (recycled) pid
        // would add its files to this title: start from nothing.
        let _ = fs::remove_dir_all(&root);
        let t = root.join("titles/t1");
        let write = |rel: &str, body: &[u8]| {
            let p = t.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, body).expect("write");
        };
        write(
            "title.toml",
            b"name = \"Test pattern t1\"\nregions = [\"eu-west\"]\n",
        );
        for (i, v) in ["v360", "v540", "v720"].iter().enumerate() {
            let playlist = MEDIA_PLAYLIST.replace("init_0", &format!("init_{i}"));
            write(&format!("{v}/index.m3u8"), playlist.as_bytes());
            write(&format!("{v}/init_{i}.mp4"), b"ftyp");
            for s in 0..3 {
                write(&format!("{v}/seg-{s:05}.m4s"), b"moof");
            }
        }
        for r in 0..4 {
            write(&format!("dash/r{r}/init.m4s"), b"ftyp");
            for c in 1..=3 {
                write(&format!("dash/r{r}/chunk-{c:05}.m4s"), b"moof");
            }
        }
        Packaged {
            root,
            media_playlist: MEDIA_PLAYLIST.as_bytes().to_vec(),
        }
    }

    fn title_dir(&self) -> PathBuf {
        self.root.join("titles/t1")
    }
}

enum Shape {
    Master,
    Media,
    Mpd,
}

fn shape(data: &[u8]) -> Option<Shape> {
    let text = data.trim_ascii_start();
    let has = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    if text.starts_with(b"#EXTM3U") {
        if has(b"#EXTINF") && !has(b"#EXT-X-STREAM-INF") {
            Some(Shape::Media)
        } else {
            Some(Shape::Master)
        }
    } else if text.starts_with(b"<") {
        Some(Shape::Mpd)
    } else {
        None
    }
}

fn import(data: &[u8]) {
    let Some(shape) = shape(data) else {
        return;
    };
    PACKAGED.with(|p| {
        let t = p.title_dir();
        let (written, master): (PathBuf, Option<&str>) = match shape {
            Shape::Master => (t.join("master.m3u8"), None),
            Shape::Media => (t.join("v360/index.m3u8"), Some(MASTER)),
            Shape::Mpd => (t.join("dash/manifest.mpd"), None),
        };
        if let Some(m) = master {
            fs::write(t.join("master.m3u8"), m).expect("write master");
        }
        fs::write(&written, data).expect("write manifest");
        if let Ok(titles) = catalog::scan(&p.root) {
            check_catalog(&p.root, &titles);
        }
        // Back to no manifest (a failed check ends the process, and the
        // next one makes a directory of its own).
        match shape {
            Shape::Media => {
                fs::write(&written, &p.media_playlist).expect("restore");
                fs::remove_file(t.join("master.m3u8")).expect("remove");
            }
            Shape::Master | Shape::Mpd => fs::remove_file(&written).expect("remove"),
        }
    });
}

fn check_catalog(root: &Path, titles: &[Title]) {
    assert_eq!(titles.len(), 1);
    let title = &titles[0];
    assert_eq!(title.id, "t1");
    let mut ids = HashSet::new();
    for r in &title.renditions {
        assert!(
            steering::config::valid_rendition(&r.id),
            "rendition id {:?} is one no appliance may report",
            r.id
        );
        assert!(
            r.id.starts_with("titles/t1/"),
            "rendition {:?} outside the title",
            r.id
        );
        assert!(ids.insert(r.id.clone()), "rendition {:?} twice", r.id);
        for o in &r.objects {
            assert!(
                o.key.starts_with("titles/t1/")
                    && o.key
                        .split('/')
                        .all(|s| !s.is_empty() && s != "." && s != ".."),
                "object key {:?} is not a plain key inside the title",
                o.key
            );
            let on_disk = fs::metadata(root.join(&o.key));
            assert!(
                on_disk
                    .as_ref()
                    .is_ok_and(|m| m.is_file() && m.len() == o.size),
                "object {:?} does not name the file that was hashed",
                o.key
            );
        }
    }
    for m in &title.manifests {
        let keep = |r: &str| ids.contains(r);
        let ps = pathways(1);
        match m.kind.as_str() {
            "hls" => {
                assert_eq!(m.key, MASTER_KEY);
                if let Err(e) = hls_multivariant(m.body.as_bytes(), &m.key, &keep, &ps, None) {
                    panic!("imported playlist cannot be served ({e}):\n{}", m.body);
                }
            }
            "dash" => {
                assert_eq!(m.key, MPD_KEY);
                if let Err(e) = dash_mpd(&m.body, &m.key, &keep, &ps, None) {
                    panic!("imported MPD cannot be served ({e}):\n{}", m.body);
                }
            }
            other => panic!("manifest kind {other:?}"),
        }
    }
}
