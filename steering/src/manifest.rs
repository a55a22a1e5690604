//! Per-play manifests: the packaged HLS multivariant playlist or DASH MPD of a title,
//! filtered to the renditions a play may use, with every URL pointing at the chosen
//! pathways (appliances, or the origin) and, when asked, content-steering information.
//!
//! Rendition ids are the object-key directories the catalog uses ("titles/t1/v720"),
//! so a caller can filter with the same ids it stores.
//!
//! HLS is read and written with m3u8-rs. DASH is rewritten event by event with quick-xml
//! rather than through dash-mpd-core's typed model: that model has no MPD-level
//! `<ContentSteering>` and silently drops whatever it does not know, while an event
//! rewrite keeps everything the packager wrote that we do not deliberately change.

use std::collections::{HashMap, HashSet};

use m3u8_rs::AlternativeMediaType as Media;
use m3u8_rs::{ClosedCaptionGroupId, ExtTag, MasterPlaylist, Playlist, QuotedOrUnquoted};
use quick_xml::events::{BytesStart, BytesText, Event};

/// One way to reach the content: an appliance (or the origin).
#[derive(Debug, Clone)]
pub struct Pathway {
    /// Pathway id (HLS PATHWAY-ID / DASH serviceLocation): the appliance id, or "origin".
    pub id: String,
    /// Absolute URL ending in '/', under which object keys resolve, e.g.
    /// "http://127.0.0.1:8080/t/<token>/" so that base + "titles/t1/v720/index.m3u8" is a fetchable URL.
    pub base_url: String,
}

/// Where players poll for pathway priority mid-session.
#[derive(Debug, Clone)]
pub struct ContentSteering {
    /// Absolute URL of the steering server (HLS SERVER-URI, DASH ContentSteering text).
    pub server_uri: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("packaged manifest is unusable: {0}")]
    Packaged(String),
    #[error("no rendition is left after filtering")]
    NothingLeft,
    #[error("no pathways given")]
    NoPathways,
    #[error("invalid pathway or steering server: {0}")]
    Invalid(String),
}

fn unusable(reason: impl Into<String>) -> ManifestError {
    ManifestError::Packaged(reason.into())
}

fn invalid(reason: String) -> ManifestError {
    ManifestError::Invalid(reason)
}

type Result<T, E = ManifestError> = std::result::Result<T, E>;

// ----- Shared rules -----

/// Expand a SegmentTemplate string; `None` for identifiers we do not support (`$Time$`
/// needs a SegmentTimeline) or a `$Number$` without a number.
pub fn expand_template(
    template: &str,
    rep_id: &str,
    bandwidth: u64,
    number: Option<u64>,
) -> Option<String> {
    // A width this large is never meant; refusing it keeps a hostile template from
    // making us allocate gigabytes.
    const MAX_WIDTH: usize = 64;
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find('$')?;
        let ident = &after[..j];
        rest = &after[j + 1..];
        let (name, format) = ident.split_once('%').unwrap_or((ident, ""));
        // `%0<width>d`; anything else pads nothing, as the catalog has always read it.
        let width = (format.strip_prefix('0').and_then(|w| w.strip_suffix('d')))
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or(0);
        if width > MAX_WIDTH {
            return None;
        }
        match name {
            "" => out.push('$'),
            "RepresentationID" => out.push_str(rep_id),
            "Bandwidth" => out.push_str(&format!("{bandwidth:0width$}")),
            "Number" => out.push_str(&format!("{:0width$}", number?)),
            _ => return None,
        }
    }
    out.push_str(rest);
    Some(out)
}

/// The directory part of an object key ("" for a key at the top).
fn dir_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Resolve a packaged relative URI against the directory `dir` into an object key.
/// Anything that could escape the title or that an appliance cannot serve as a plain
/// object (absolute URLs, queries, `..`) is refused, as the catalog refuses it on import.
fn resolve(dir: &str, uri: &str) -> Result<String> {
    let bad = || unusable(format!("URI {uri:?} is not a path inside the title"));
    if uri.is_empty()
        || uri.contains("://")
        || uri.starts_with('/')
        || uri.contains(['?', '#', '"', '\\'])
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let mut key = dir.to_owned();
    for seg in uri.split('/').filter(|s| *s != ".") {
        if seg.is_empty() || seg == ".." {
            return Err(bad());
        }
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(seg);
    }
    Ok(key)
}

/// URLs we emit go into quoted HLS attributes and XML; refusing characters that are not
/// valid in a URL anyway means neither format needs escaping tricks.
fn check_url(what: &str, url: &str) -> Result<()> {
    let scheme_ok = url.split_once("://").is_some_and(|(s, rest)| {
        !s.is_empty()
            && !rest.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let chars_ok = !url.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\' | '`' | '{' | '}')
    });
    match scheme_ok && chars_ok {
        true => Ok(()),
        false => Err(invalid(format!("{what} {url:?} is not an absolute URL"))),
    }
}

fn check_pathways(pathways: &[Pathway], steering: Option<&ContentSteering>) -> Result<()> {
    if pathways.is_empty() {
        return Err(ManifestError::NoPathways);
    }
    let mut seen = HashSet::new();
    for Pathway { id, base_url } in pathways {
        // The HLS spec's character set for PATHWAY-ID; DASH serviceLocation uses the same ids.
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if id.is_empty() || !id.chars().all(id_char) {
            return Err(invalid(format!("pathway id {id:?} is not [A-Za-z0-9._-]+")));
        }
        if !seen.insert(id) {
            return Err(invalid(format!("pathway {id:?} given twice")));
        }
        check_url("pathway base_url", base_url)?;
        if !base_url.ends_with('/') {
            return Err(invalid(format!("base_url {base_url:?} must end with '/'")));
        }
    }
    if let Some(s) = steering {
        check_url("steering server_uri", &s.server_uri)?;
    }
    Ok(())
}

// ----- HLS -----

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
    Ok(master)
}

// ----- DASH -----

/// Deeper than any MPD nests; the bound keeps garbage from growing the element stack.
const MAX_XML_DEPTH: usize = 32;

/// An element of the parsed MPD: its local name and the events it spans.
struct Node {
    name: String,
    qname: String,
    start: usize,
    /// Index of its End event (== `start` for an empty element).
    end: usize,
    children: Vec<usize>,
}

/// The MPD as quick-xml events plus an element index over them, so elements can be
/// dropped by event range and the rest written back exactly as read.
struct Mpd<'a> {
    events: Vec<Event<'a>>,
    nodes: Vec<Node>,
    root: usize,
}

impl Mpd<'_> {
    fn children<'s>(&'s self, node: usize, name: &'s str) -> impl Iterator<Item = usize> + 's {
        self.nodes[node]
            .children
            .iter()
            .copied()
            .filter(move |&c| self.nodes[c].name == name)
    }

    fn attr(&self, node: usize, name: &str) -> Result<Option<String>> {
        let (Event::Start(e) | Event::Empty(e)) = &self.events[self.nodes[node].start] else {
            return Ok(None);
        };
        for a in e.attributes() {
            let a = a.map_err(|err| unusable(format!("bad XML attribute: {err}")))?;
            if a.key.as_ref() == name {
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|err| unusable(format!("bad XML attribute value: {err}")))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    }
}

fn parse_mpd(text: &str) -> Result<Mpd<'_>> {
    let xml_err = |e: quick_xml::Error| unusable(format!("not XML: {e}"));
    let mut reader = quick_xml::Reader::from_str(text);
    let mut events = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut root = None;
    loop {
        let ev = reader.read_event().map_err(xml_err)?;
        let idx = events.len();
        match &ev {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let n = nodes.len();
                nodes.push(Node {
                    name: e.local_name().as_ref().to_owned(),
                    qname: e.name().as_ref().to_owned(),
                    start: idx,
                    end: idx,
                    children: Vec::new(),
                });
                match stack.last() {
                    Some(&parent) => nodes[parent].children.push(n),
                    None if root.is_none() => root = Some(n),
                    None => return Err(unusable("more than one XML root element")),
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(n);
                    if stack.len() > MAX_XML_DEPTH {
                        return Err(unusable("XML nested too deeply for an MPD"));
                    }
                }
            }
            Event::End(_) => {
                // The reader already checked that end tags match their start tags.
                let n = stack.pop().ok_or_else(|| unusable("unbalanced XML"))?;
                nodes[n].end = idx;
            }
            // Layout whitespace: dropped, and the writer indents afresh, so removed
            // elements leave no holes behind.
            Event::Text(t) if t.bytes().all(|b| b.is_ascii_whitespace()) => continue,
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) if stack.is_empty() => {
                return Err(unusable("text outside the XML root element"));
            }
            _ => {}
        }
        events.push(ev);
    }
    if !stack.is_empty() {
        return Err(unusable("XML ends inside an element"));
    }
    match root {
        Some(root) if nodes[root].name == "MPD" => Ok(Mpd {
            events,
            nodes,
            root,
        }),
        _ => Err(unusable("the XML root element is not an MPD")),
    }
}

/// A Representation and the rendition (object-key directory) its segments live in.
struct Rep {
    node: usize,
    adaptation: usize,
    rendition: String,
}

fn representations(mpd: &Mpd, mpd_key: &str) -> Result<Vec<Rep>> {
    let dir = dir_of(mpd_key);
    let mut reps = Vec::new();
    for period in mpd.children(mpd.root, "Period") {
        for set in mpd.children(period, "AdaptationSet") {
            for rep in mpd.children(set, "Representation") {
                let id = mpd
                    .attr(rep, "id")?
                    .ok_or_else(|| unusable("Representation without id"))?;
                let bad = |what: String| unusable(format!("Representation {id}: {what}"));
                let number = |name: &str, v: Option<String>, default: u64| match v {
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| bad(format!("bad {name} {v:?}"))),
                    None => Ok(default),
                };
                let bandwidth = number("bandwidth", mpd.attr(rep, "bandwidth")?, 0)?;
                // SegmentTemplate attributes inherit attribute by attribute from the
                // AdaptationSet and Period levels; the innermost value wins.
                let template = |name: &str| -> Result<Option<String>> {
                    let levels = [rep, set, period].into_iter();
                    for t in levels.flat_map(|l| mpd.children(l, "SegmentTemplate")) {
                        if let Some(v) = mpd.attr(t, name)? {
                            return Ok(Some(v));
                        }
                    }
                    Ok(None)
                };
                let media = template("media")?.ok_or_else(|| {
                    bad("only SegmentTemplate@media addressing is supported".into())
                })?;
                let start = number("startNumber", template("startNumber")?, 1)?;
                let uri = expand_template(&media, &id, bandwidth, Some(start))
                    .ok_or_else(|| bad(format!("unsupported media template {media:?}")))?;
                let key = resolve(dir, &uri)?;
                reps.push(Rep {
                    node: rep,
                    adaptation: set,
                    rendition: dir_of(&key).to_owned(),
                });
            }
        }
    }
    Ok(reps)
}

/// The rendition ids a packaged DASH MPD defines, in document order (so callers can list/filter them
/// without parsing XML themselves).
pub fn dash_renditions(packaged: &str, mpd_key: &str) -> Result<Vec<String>, ManifestError> {
    let mpd = parse_mpd(packaged)?;
    let mut seen = HashSet::new();
    Ok(representations(&mpd, mpd_key)?
        .into_iter()
        .map(|r| r.rendition)
        .filter(|r| seen.insert(r.clone()))
        .collect())
}

/// DASH MPD for one play, from the packaged MPD whose object key is `mpd_key`. `keep` gets
/// rendition ids (directory keys of a Representation's media segments, "titles/t1/dash/r0");
/// rejected Representations and AdaptationSets left empty go. Packaged BaseURLs give way to
/// one MPD-level `<BaseURL serviceLocation=id>` per pathway (primary first), and steering
/// adds `<ContentSteering defaultServiceLocation=first queryBeforeStart="false">`.
pub fn dash_mpd(
    packaged: &str,
    mpd_key: &str,
    keep: &dyn Fn(&str) -> bool,
    pathways: &[Pathway],
    steering: Option<&ContentSteering>,
) -> Result<String, ManifestError> {
    check_pathways(pathways, steering)?;
    let mpd = parse_mpd(packaged)?;
    let reps = representations(&mpd, mpd_key)?;
    let mut dropped = vec![false; mpd.nodes.len()];
    for r in &reps {
        dropped[r.node] = !keep(&r.rendition);
    }
    if reps.iter().all(|r| dropped[r.node]) {
        return Err(ManifestError::NothingLeft);
    }
    for r in &reps {
        dropped[r.adaptation] = mpd
            .children(r.adaptation, "Representation")
            .all(|c| dropped[c]);
    }
    // The catalog keys objects as if no BaseURL applied, so every packaged one goes and
    // players resolve segments against exactly the base we give them.
    for (d, n) in dropped.iter_mut().zip(&mpd.nodes) {
        *d |= n.name == "BaseURL";
    }
    // A packaged steering element would name service locations this play does not have.
    for c in mpd.children(mpd.root, "ContentSteering") {
        dropped[c] = true;
    }

    // Schema order puts BaseURL right after ProgramInformation; ContentSteering follows,
    // where players and other packagers put it.
    let root = &mpd.nodes[mpd.root];
    let insert_at = root
        .children
        .iter()
        .map(|&c| &mpd.nodes[c])
        .find(|n| n.name != "ProgramInformation")
        .map_or(root.end, |n| n.start);
    // New elements share the root's namespace prefix, if the packager used one.
    let prefix = root.qname.strip_suffix("MPD").unwrap_or_default();
    let mpd_dir = dir_of(mpd_key);
    let element = |local: &str, attrs: &[(&str, &str)], text: &str| {
        let start = BytesStart::new(format!("{prefix}{local}")).with_attributes(attrs.to_vec());
        let end = Event::End(start.to_end().into_owned());
        let text = Event::Text(BytesText::new(text).into_owned());
        [Event::Start(start), text, end]
    };
    let mut inserted: Vec<Event> = Vec::new();
    for p in pathways {
        let url = match mpd_dir {
            "" => p.base_url.clone(),
            dir => format!("{}{dir}/", p.base_url),
        };
        inserted.extend(element("BaseURL", &[("serviceLocation", &p.id)], &url));
    }
    if let Some(s) = steering {
        let attrs = [
            ("defaultServiceLocation", pathways[0].id.as_str()),
            ("queryBeforeStart", "false"),
        ];
        inserted.extend(element("ContentSteering", &attrs, &s.server_uri));
    }

    // resume[i]: for the first event of a dropped element, the event after its end.
    let mut resume = vec![0; mpd.events.len()];
    for (n, _) in mpd.nodes.iter().zip(&dropped).filter(|(_, d)| **d) {
        resume[n.start] = n.end + 1;
    }
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    let write_err = |e: std::io::Error| unusable(format!("writing the MPD: {e}"));
    let mut next = 0;
    for (i, ev) in mpd.events.iter().enumerate() {
        if i == insert_at {
            for ev in &inserted {
                w.write_event(ev.borrow()).map_err(write_err)?;
            }
        }
        next = next.max(resume[i]);
        if i >= next {
            w.write_event(ev.borrow()).map_err(write_err)?;
        }
    }
    let mut out = w.into_inner();
    out.push(b'\n');
    String::from_utf8(out).map_err(|_| unusable("MPD is not UTF-8"))
}

#[cfg(test)]
mod tests;
