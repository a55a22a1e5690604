//! Packaging the encoded rungs (stream copy, no re-encode) in the layout
//! `steering catalog import` reads (scripts/make-content.sh writes it through oca-pack):
//!
//! ```text
//! titles/<id>/master.m3u8           HLS multivariant playlist
//! titles/<id>/v<height>/…           per rung: index.m3u8, init.mp4, seg-NNNNN.m4s (fMP4)
//! titles/<id>/dash/manifest.mpd     DASH, SegmentTemplate, $Number$
//! titles/<id>/dash/r<N>/…           one directory per Representation (video rungs, then audio)
//! titles/<id>/ladder.json           the ladder, its analysis and measured qualities
//! titles/<id>/poster.jpg            a frame of the title, 640 px wide
//! titles/<id>/title.toml            name, regions, release, artwork (written last)
//! ```
//!
//! It is all written into a staging directory beside the output and renamed
//! into `titles/` whole, so an import never sees half a title.

use std::path::Path;

use crate::cenc::{self, Key};
use crate::encode::{Options, Report};
use crate::tool::{PackError, ffmpeg, io, run};

/// The poster's file name in the title's directory (`artwork` in title.toml).
pub const POSTER: &str = "poster.jpg";

/// Write HLS, DASH, the sidecar and title.toml into `stage` (emptied first).
pub fn package(
    ffmpeg_bin: &Path,
    rungs: &Path,
    report: &Report,
    stage: &Path,
) -> Result<(), PackError> {
    if stage.exists() {
        std::fs::remove_dir_all(stage).map_err(io(stage))?;
    }
    std::fs::create_dir_all(stage).map_err(io(stage))?;
    let n = report.rungs.len();
    let audio_input = report.audio.then_some(n);
    let inputs = |cmd: &mut std::process::Command| {
        for r in &report.rungs {
            cmd.arg("-i").arg(rungs.join(format!("{}.mp4", r.name)));
        }
        if report.audio {
            cmd.arg("-i").arg(rungs.join("audio.m4a"));
        }
    };
    let seg = report.segment_secs.to_string();

    // A poster for browsing: the tallest rung's frame a tenth of the way in,
    // 640 pixels wide (encoded rungs are clear, so an encrypted title gets
    // one too).
    if let Some(top) = report.rungs.iter().max_by_key(|r| r.height) {
        let at = format!("{:.3}", report.analysis.source.duration * 0.1);
        let poster = stage.join(POSTER);
        let mut cmd = ffmpeg(ffmpeg_bin);
        cmd.args(["-ss", &at])
            .arg("-i")
            .arg(rungs.join(format!("{}.mp4", top.name)))
            .args(["-frames:v", "1", "-vf", "scale=640:-2", "-q:v", "4"])
            .arg(&poster);
        run("poster", &mut cmd)?;
    }

    // HLS: each rung with the audio muxed in, as make-content.sh's fixed ladder did.
    let mut cmd = ffmpeg(ffmpeg_bin);
    cmd.current_dir(stage);
    inputs(&mut cmd);
    let mut streams = Vec::new();
    for (i, r) in report.rungs.iter().enumerate() {
        cmd.args(["-map", &format!("{i}:v:0")]);
        if let Some(a) = audio_input {
            cmd.args(["-map", &format!("{a}:a:0")]);
            streams.push(format!("v:{i},a:{i},name:{}", &r.name[1..]));
        } else {
            streams.push(format!("v:{i},name:{}", &r.name[1..]));
        }
    }
    cmd.args(["-c", "copy", "-f", "hls", "-hls_time", &seg])
        .args(["-hls_playlist_type", "vod", "-hls_segment_type", "fmp4"])
        .args(["-hls_fmp4_init_filename", "init.mp4"])
        .args(["-hls_segment_filename", "v%v/seg-%05d.m4s"])
        .args(["-master_pl_name", "master.m3u8"])
        .args(["-var_stream_map", &streams.join(" ")])
        .arg("v%v/index.m3u8");
    run("package HLS", &mut cmd)?;

    // DASH: every video rung and the audio once, a directory each.
    let reps = n + usize::from(report.audio);
    for i in 0..reps {
        let d = stage.join(format!("dash/r{i}"));
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let mut cmd = ffmpeg(ffmpeg_bin);
    cmd.current_dir(stage);
    inputs(&mut cmd);
    for i in 0..n {
        cmd.args(["-map", &format!("{i}:v:0")]);
    }
    if let Some(a) = audio_input {
        cmd.args(["-map", &format!("{a}:a:0")]);
    }
    cmd.args(["-c", "copy", "-f", "dash", "-seg_duration", &seg])
        .args(["-use_template", "1", "-use_timeline", "0"])
        .args(["-init_seg_name", "r$RepresentationID$/init.m4s"])
        .args([
            "-media_seg_name",
            "r$RepresentationID$/chunk-$Number%05d$.m4s",
        ])
        .arg("dash/manifest.mpd");
    run("package DASH", &mut cmd)?;
    rewrite_master(stage, report)
}

/// Encrypt every rendition of the staged title with `key` (Common
/// Encryption, `cenc`): each directory with an init segment (HLS `v*/`
/// `init_<N>.mp4`, DASH `dash/r*/init.m4s`) has it and its `.m4s` segments
/// rewritten, and `drm.json` names the scheme and key ID (the key stays out
/// of the title: see `write_key`).
pub fn encrypt(stage: &Path, key: &Key) -> Result<(), PackError> {
    let mut dirs = vec![stage.to_path_buf()];
    let mut done = 0;
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        dirs.extend(entries.iter().filter(|p| p.is_dir()).cloned());
        // ffmpeg names an HLS variant's init segment init_<N>.mp4 whatever
        // -hls_fmp4_init_filename says; DASH's is init.m4s.
        let is_init = |p: &std::path::PathBuf| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("init") && (n.ends_with(".mp4") || n.ends_with(".m4s"))
            })
        };
        let inits: Vec<&std::path::PathBuf> = entries.iter().filter(|p| is_init(p)).collect();
        let init = match inits.as_slice() {
            [] => continue,
            [one] => *one,
            more => {
                return Err(PackError::Usage(format!(
                    "{}: {} init segments in one rendition",
                    dir.display(),
                    more.len()
                )));
            }
        };
        let fail = |p: &Path, e: cenc::CencError| PackError::ToolFailed {
            step: format!("encrypt {}", p.display()),
            detail: e.to_string(),
        };
        let bytes = std::fs::read(init).map_err(io(init))?;
        let (protected, tracks) = cenc::protect_init(&bytes, key).map_err(|e| fail(init, e))?;
        std::fs::write(init, protected).map_err(io(init))?;
        let mut ivs = cenc::iv_counter().map_err(io(Path::new("/dev/urandom")))?;
        for seg in entries
            .iter()
            .filter(|p| p != &init && p.extension().is_some_and(|x| x == "m4s"))
        {
            let bytes = std::fs::read(seg).map_err(io(seg))?;
            let e =
                cenc::encrypt_segment(&bytes, &tracks, key, &mut ivs).map_err(|e| fail(seg, e))?;
            std::fs::write(seg, e).map_err(io(seg))?;
        }
        let playlist = dir.join("index.m3u8");
        if playlist.exists() {
            signal_hls(&playlist, key)?;
        }
        done += 1;
    }
    if done == 0 {
        return Err(PackError::Usage(
            "nothing to encrypt: no init segment".into(),
        ));
    }
    let drm = serde_json::json!({
        "scheme": "cenc",
        "kid": cenc::hex(&key.kid),
        "systems": ["1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"],
    });
    let path = stage.join("drm.json");
    std::fs::write(&path, format!("{drm:#}\n")).map_err(io(&path))
}

/// Tell HLS players the media playlist's segments are protected: an
/// `EXT-X-KEY` before its `EXT-X-MAP`, `SAMPLE-AES-CTR` (cenc) for the W3C
/// Clear Key format with the key ID as its data URI (what hls.js reads; the
/// licence URL is the player's to know, from the play).
fn signal_hls(playlist: &Path, key: &Key) -> Result<(), PackError> {
    use base64::Engine;
    let text = std::fs::read_to_string(playlist).map_err(io(playlist))?;
    let line = format!(
        "#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\",URI=\"data:text/plain;base64,{}\"",
        base64::engine::general_purpose::STANDARD.encode(key.kid)
    );
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut placed = false;
    for l in text.lines() {
        if !placed && l.starts_with("#EXT-X-MAP") {
            out.push_str(&line);
            out.push('\n');
            placed = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !placed {
        return Err(PackError::Usage(format!(
            "{}: no EXT-X-MAP (fMP4 init segment) to protect",
            playlist.display()
        )));
    }
    std::fs::write(playlist, out).map_err(io(playlist))
}

/// Write the title's content key to `keys/<title>.json`, readable by its
/// owner only (0600), whole or not at all (written aside, then renamed): what
/// `steering catalog import` stores, encrypted, and nothing else reads.
pub fn write_key(keys: &Path, title: &str, key: &Key) -> Result<(), PackError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(keys)
        .map_err(io(keys))?;
    let body = serde_json::json!({
        "title": title,
        "scheme": "cenc",
        "kid": cenc::hex(&key.kid),
        "key": cenc::hex(&key.key),
    });
    let tmp = keys.join(format!(".{title}.json.tmp"));
    let path = keys.join(format!("{title}.json"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(format!("{body:#}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// ffmpeg's multivariant playlist, with what it leaves out when it copies
/// streams: CODECS (taken from the MPD it wrote for the same streams) and
/// BANDWIDTH as the HLS spec means it, the peak segment bitrate, with the
/// mean as AVERAGE-BANDWIDTH (ffmpeg writes the mean plus 10 %).
fn rewrite_master(stage: &Path, report: &Report) -> Result<(), PackError> {
    let mpd_path = stage.join("dash/manifest.mpd");
    let mpd = std::fs::read_to_string(&mpd_path).map_err(io(&mpd_path))?;
    let codecs = representation_codecs(&mpd);
    let audio = report
        .audio
        .then(|| codecs.get(report.rungs.len()).cloned().flatten())
        .flatten();
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    for (i, r) in report.rungs.iter().enumerate() {
        let dir = stage.join(&r.name);
        let (peak, mean) = segment_rates(&dir.join("index.m3u8"))?;
        let mut inf = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={mean},RESOLUTION={}x{}",
            r.width, r.height
        );
        let list: Vec<String> = [codecs.get(i).cloned().flatten(), audio.clone()]
            .into_iter()
            .flatten()
            .collect();
        if !list.is_empty() {
            inf += &format!(",CODECS=\"{}\"", list.join(","));
        }
        master += &format!("{inf}\n{}/index.m3u8\n", r.name);
    }
    let path = stage.join("master.m3u8");
    std::fs::write(&path, master).map_err(io(&path))
}

/// The `codecs` of each Representation, by its numeric id.
fn representation_codecs(mpd: &str) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for tag in mpd.split('<').filter(|t| t.starts_with("Representation ")) {
        let attr = |name: &str| {
            let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let len = tag[start..].find('"')?;
            Some(tag[start..start + len].to_owned())
        };
        if let Some(id) = attr("id").and_then(|i| i.parse::<usize>().ok()) {
            if out.len() <= id {
                out.resize(id + 1, None);
            }
            out[id] = attr("codecs");
        }
    }
    out
}

/// Peak and mean bits per second over a media playlist's segments.
fn segment_rates(playlist: &Path) -> Result<(u64, u64), PackError> {
    let bytes = std::fs::read(playlist).map_err(io(playlist))?;
    let Ok(m3u8_rs::Playlist::MediaPlaylist(list)) = m3u8_rs::parse_playlist_res(&bytes) else {
        return Err(PackError::ToolFailed {
            step: "package HLS".into(),
            detail: format!("{}: not a media playlist", playlist.display()),
        });
    };
    let dir = playlist.parent().expect("in a directory");
    let (mut peak, mut bits, mut secs) = (0f64, 0f64, 0f64);
    for seg in &list.segments {
        let path = dir.join(&seg.uri);
        let b = std::fs::metadata(&path).map_err(io(&path))?.len() as f64 * 8.0;
        let d = f64::from(seg.duration).max(1e-3);
        peak = peak.max(b / d);
        bits += b;
        secs += d;
    }
    Ok((peak.ceil() as u64, (bits / secs.max(1e-3)).ceil() as u64))
}

/// The sidecar and title.toml, then the staged title into place (replacing
/// an old one only when asked), then the work directory away.
pub fn finish(
    stage: &Path,
    report: &Report,
    opts: &Options,
    dest: &Path,
    work: &Path,
) -> Result<(), PackError> {
    let sidecar = stage.join("ladder.json");
    let json = serde_json::to_vec_pretty(report).expect("serialisable");
    std::fs::write(&sidecar, json).map_err(io(&sidecar))?;
    let toml_path = stage.join("title.toml");
    let mut toml = title_toml(opts);
    if stage.join(POSTER).is_file() {
        toml += &format!("artwork = [\"{POSTER}\"]\n");
    }
    std::fs::write(&toml_path, toml).map_err(io(&toml_path))?;
    let parent = dest.parent().expect("titles/<id>");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    if dest.exists() {
        // --force: the old title out of the way in one rename, the new one
        // in with another; only then is the old one deleted.
        let old = work.join("replaced");
        std::fs::rename(dest, &old).map_err(io(dest))?;
    }
    std::fs::rename(stage, dest).map_err(io(dest))?;
    std::fs::remove_dir_all(work).map_err(io(work))?;
    // The work root goes too once no other title is in progress.
    if let Some(root) = work.parent() {
        let _ = std::fs::remove_dir(root);
    }
    Ok(())
}

/// title.toml as steering's catalog reads it (name, regions, release).
pub fn title_toml(opts: &Options) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string");
    let regions: Vec<String> = opts.regions.iter().map(|r| q(r)).collect();
    let mut t = format!(
        "name = {}\nregions = [{}]\n",
        q(&opts.name),
        regions.join(", ")
    );
    if let Some(r) = opts.release {
        t += &format!("release = {r}\n");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_come_from_the_mpd_by_representation_id() {
        let mpd = r#"<MPD><Period><AdaptationSet>
<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="1">
<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="1">
<Representation id="1" mimeType="video/mp4" bandwidth="1">
</AdaptationSet></Period></MPD>"#;
        assert_eq!(
            representation_codecs(mpd),
            [Some("avc1.64001f".into()), None, Some("mp4a.40.2".into())]
        );
    }

    #[test]
    fn title_toml_quotes_what_it_is_given() {
        let opts = Options {
            title: "t1".into(),
            name: "A \"quoted\" name".into(),
            regions: vec!["eu-west".into(), "us-east".into()],
            release: Some(1_700_000_000),
            segment_secs: 4.0,
            plan: crate::analyze::Plan::default(),
            params: crate::metric::Metric::SsimDb.default_params(),
            force: false,
            encrypt: false,
        };
        assert_eq!(
            title_toml(&opts),
            "name = \"A \\\"quoted\\\" name\"\nregions = [\"eu-west\", \"us-east\"]\nrelease = 1700000000\n"
        );
    }
}
