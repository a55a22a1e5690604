//! HLS: the per-play multivariant playlist, read and written with m3u8-rs.

use std::collections::{HashMap, HashSet};

use m3u8_rs::AlternativeMediaType as Media;
use m3u8_rs::{ClosedCaptionGroupId, ExtTag, MasterPlaylist, Playlist, QuotedOrUnquoted};

use super::{
    ContentSteering, ManifestError, Pathway, Result, check_pathways, dir_of, resolve, unusable,
};

/// Tags m3u8-rs models: one that ends up among the unknown tags failed to parse, and
/// passing it through would hide a broken variant or rendition.
const MODELLED_HLS_TAGS: &str =
    "X-VERSION X-STREAM-INF X-I-FRAME-STREAM-INF X-MEDIA X-SESSION-DATA X-SESSION-KEY X-START";

/// Group ids of a pathway's copy of the renditions. Pathway ids cannot contain '@', so
/// the part after the last '@' always names the pathway and no two (group, pathway)
/// pairs collide, which a '-' separator could not promise.
fn group_for(group: &str, pathway: &Pathway) -> String {
    format!("{group}@{}", pathway.id)
}

/// HLS multivariant playlist for one play, from the packaged `master.m3u8` whose object key
/// is `master_key`. `keep` gets rendition ids (media playlist directory keys, "titles/t1/v720").
/// URIs become `pathway.base_url + key`. With several pathways or with steering, variants
/// and EXT-X-MEDIA renditions repeat per pathway (primary first) with PATHWAY-ID and
/// `GROUP-ID@pathway`, and steering adds EXT-X-CONTENT-STEERING naming the first pathway.
pub fn hls_multivariant(
    packaged: &[u8],
    master_key: &str,
    keep: &dyn Fn(&str) -> bool,
    pathways: &[Pathway],
    steering: Option<&ContentSteering>,
) -> Result<String, ManifestError> {
    check_pathways(pathways, steering)?;
    // What is left in `out` after taking the renditions is kept as the packager wrote it.
    let mut out = parse_master(packaged)?;
    let packaged_alternatives = std::mem::take(&mut out.alternatives);
    let packaged_variants = std::mem::take(&mut out.variants);
    // Replaced below: a packaged steering tag names pathways this play does not have.
    out.unknown_tags.retain(|t| t.tag != "X-CONTENT-STEERING");
    let dir = dir_of(master_key);

    let mut groups_before = HashSet::new();
    let mut groups_after = HashSet::new();
    let mut alternatives = Vec::new();
    for alt in &packaged_alternatives {
        let key = alt.uri.as_deref().map(|u| resolve(dir, u)).transpose()?;
        groups_before.insert((alt.media_type.clone(), alt.group_id.clone()));
        // Renditions without a URI (muxed audio, closed captions) are part of every variant.
        if key.as_deref().is_none_or(|k| keep(dir_of(k))) {
            groups_after.insert((alt.media_type.clone(), alt.group_id.clone()));
            alternatives.push((alt, key));
        }
    }
    // A group the filter emptied must not be referenced: a variant relying on it for audio
    // or video would play incompletely, so it goes; missing subtitles only lose the option.
    let emptied = |ty: Media, group: &Option<String>| {
        group.as_ref().is_some_and(|g| {
            let k = (ty, g.clone());
            groups_before.contains(&k) && !groups_after.contains(&k)
        })
    };
    let mut variants = Vec::new();
    for v in &packaged_variants {
        let key = resolve(dir, &v.uri)?;
        if !keep(dir_of(&key)) || emptied(Media::Audio, &v.audio) || emptied(Media::Video, &v.video)
        {
            continue;
        }
        let mut v = v.clone();
        if emptied(Media::Subtitles, &v.subtitles) {
            v.subtitles = None;
        }
        variants.push((v, key));
    }
    if !variants.iter().any(|(v, _)| !v.is_i_frame) {
        return Err(ManifestError::NothingLeft);
    }

    let steered = pathways.len() > 1 || steering.is_some();
    for p in pathways {
        for (alt, key) in &alternatives {
            let mut alt = (*alt).clone();
            alt.uri = key.as_ref().map(|k| format!("{}{k}", p.base_url));
            if steered {
                alt.group_id = group_for(&alt.group_id, p);
            }
            out.alternatives.push(alt);
        }
        for (v, key) in &variants {
            let mut v = v.clone();
            v.uri = format!("{}{key}", p.base_url);
            let attrs = v.other_attributes.get_or_insert_with(HashMap::new);
            if steered {
                for g in [&mut v.audio, &mut v.video, &mut v.subtitles] {
                    if let Some(g) = g.as_mut() {
                        *g = group_for(g, p);
                    }
                }
                if let Some(ClosedCaptionGroupId::GroupId(g)) = v.closed_captions.as_mut() {
                    *g = group_for(g, p);
                }
                attrs.insert("PATHWAY-ID".into(), QuotedOrUnquoted::Quoted(p.id.clone()));
            } else {
                attrs.remove("PATHWAY-ID");
            }
            if attrs.is_empty() {
                v.other_attributes = None;
            }
            out.variants.push(v);
        }
    }
    if let Some(s) = steering {
        // m3u8-rs 6 does not model EXT-X-CONTENT-STEERING; both values were checked to
        // hold no quote or line break, so the attribute list cannot be broken out of.
        let (uri, first) = (&s.server_uri, &pathways[0].id);
        let rest = Some(format!("SERVER-URI=\"{uri}\",PATHWAY-ID=\"{first}\""));
        let tag = "X-CONTENT-STEERING".into();
        out.unknown_tags.push(ExtTag { tag, rest });
    }
    let mut buf = Vec::new();
    out.write_to(&mut buf)
        .map_err(|e| unusable(format!("writing the playlist: {e}")))?;
    // m3u8-rs writes attribute values back as it read them, and reads some
    // malformed ones (an unbalanced quote, say) leniently: such a playlist can
    // come out as a different one, with URIs under no pathway (found by
    // fuzzing). Read the result back and refuse it unless it says what we wrote.
    let again = parse_master(&buf)?;
    if again.variants != out.variants
        || again.alternatives != out.alternatives
        || again.unknown_tags != out.unknown_tags
    {
        return Err(unusable(
            "the playlist does not read back as written (malformed attribute list?)",
        ));
    }
    String::from_utf8(buf).map_err(|_| unusable("playlist is not UTF-8"))
}

fn parse_master(bytes: &[u8]) -> Result<MasterPlaylist> {
    // RFC 8216 §4.1: no control characters but CR and LF. m3u8-rs reads
    // them into attribute names and values and writes them back out, and
    // what it writes then no longer parses as the same playlist (found by
    // fuzzing: a NUL inside EXT-X-STREAM-INF came out as a media playlist).
    let control = |l: &[u8]| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        l.iter().any(|&b| b < 0x20 || b == 0x7f)
    };
    if let Some(line) = bytes.split(|&b| b == b'\n').position(control) {
        return Err(unusable(format!(
            "control character on playlist line {}",
            line + 1
        )));
    }
    let (rest, master) = match m3u8_rs::parse_playlist(bytes) {
        Ok((rest, Playlist::MasterPlaylist(m))) => (rest, m),
        Ok((_, Playlist::MediaPlaylist(_))) => {
            return Err(unusable("a media playlist, not a multivariant playlist"));
        }
        Err(_) => return Err(unusable("not an HLS playlist")),
    };
    // m3u8-rs stops quietly at the first line it cannot read; what it skipped could be
    // variants, so a partial parse is an error rather than a shorter playlist.
    if !rest.iter().all(u8::is_ascii_whitespace) {
        let line = bytes.len() - rest.len();
        let line = bytes[..line].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(unusable(format!("unreadable playlist line {line}")));
    }
    if let Some(t) = master
        .unknown_tags
        .iter()
        .find(|t| MODELLED_HLS_TAGS.split(' ').any(|m| m == t.tag))
    {
        return Err(unusable(format!("malformed #EXT-{}", t.tag)));
    }
    // Attributes m3u8-rs does not model sit in a HashMap and are written back
    // in its (random) order: one whose name or value is outside RFC 8216
    // §4.2's grammar can then read back as another attribute list in some
    // orders and not others, so a playlist would be served or refused by
    // chance (found by fuzzing). Only well-formed ones are kept.
    let others = master
        .variants
        .iter()
        .map(|v| &v.other_attributes)
        .chain(master.alternatives.iter().map(|a| &a.other_attributes))
        .chain(master.session_data.iter().map(|d| &d.other_attributes));
    for attrs in others.flatten() {
        if let Some(name) = attrs
            .iter()
            .find_map(|(k, v)| (!well_formed(k, v)).then_some(k))
        {
            return Err(unusable(format!("malformed attribute {name:?}")));
        }
    }
    Ok(master)
}

/// An attribute as RFC 8216 §4.2 allows it: a name of `[A-Z0-9-]`, and a
/// value that is a quoted string without quotes or line breaks, or an
/// unquoted one without commas, quotes or whitespace.
fn well_formed(name: &str, value: &QuotedOrUnquoted) -> bool {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    let value_ok = match value {
        QuotedOrUnquoted::Quoted(v) => !v.contains(['"', '\r', '\n']),
        QuotedOrUnquoted::Unquoted(v) => {
            !v.is_empty() && !v.contains(|c: char| c == ',' || c == '"' || c.is_whitespace())
        }
    };
    name_ok && value_ok
}

/// `playlist` (a per-play multivariant playlist) with an
/// `EXT-X-SESSION-KEY` for a Clear Key protected title (key ID `kid`), the
/// same attributes as the `EXT-X-KEY` the packager wrote into its media
/// playlists (RFC 8216 4.3.4.5), so a player may start on the licence before
/// it loads a media playlist.
pub fn protect_master(playlist: &str, kid: &[u8; 16]) -> String {
    use base64::Engine;
    let line = format!(
        "#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\",URI=\"data:text/plain;base64,{}\"",
        base64::engine::general_purpose::STANDARD.encode(kid)
    );
    let has_version = playlist.lines().any(|l| l.starts_with("#EXT-X-VERSION"));
    let mut out = String::with_capacity(playlist.len() + line.len() + 1);
    let mut placed = false;
    for l in playlist.lines() {
        out.push_str(l);
        out.push('\n');
        // After the header tags, before the first variant or rendition.
        let anchor = if has_version {
            l.starts_with("#EXT-X-VERSION")
        } else {
            l.trim() == "#EXTM3U"
        };
        if !placed && anchor {
            out.push_str(&line);
            out.push('\n');
            placed = true;
        }
    }
    out
}
