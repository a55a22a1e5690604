//! DASH: reading a packaged MPD (import and plays alike) and the per-play rewrite.
//!
//! One model serves both, an element index over quick-xml events: the per-play MPD
//! must drop Representations, replace BaseURLs and add an MPD-level
//! `<ContentSteering>` while keeping everything else the packager wrote, byte for
//! byte where it can. A typed MPD model (dash-mpd-core, which import used to read
//! with) has no `<ContentSteering>` and drops what it does not know, so it cannot
//! write what plays need; and reading with a second parser let import accept MPDs
//! that plays then refused (found by fuzzing). Events can do both.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, BytesText, Event};

use super::{
    ContentSteering, ManifestError, Pathway, Result, check_pathways, dir_of, expand_template,
    resolve, unusable,
};

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

/// A Representation as import and plays both read it: SegmentTemplate attributes
/// inherit attribute by attribute from the AdaptationSet and Period levels (the
/// innermost value wins), and codecs, content type and MIME type from the
/// AdaptationSet.
#[derive(Debug, Clone, PartialEq)]
pub struct DashRepresentation {
    pub id: String,
    pub bandwidth: u64,
    pub codecs: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    /// `contentType`, else `mimeType` (`video`, `audio/mp4`, ...).
    pub content_type: Option<String>,
    /// SegmentTemplate@media and @initialization, unexpanded.
    pub media: String,
    pub initialization: Option<String>,
    pub start_number: u64,
    /// Seconds per segment (@duration / @timescale; 0 when not given).
    pub segment_duration: f64,
    /// The rendition id: the object-key directory its first media segment lives in.
    pub rendition: String,
}

/// What import and plays read of an MPD.
#[derive(Debug, Clone, PartialEq)]
pub struct DashManifest {
    /// `mediaPresentationDuration` in seconds.
    pub duration: Option<f64>,
    pub representations: Vec<DashRepresentation>,
}

/// A Representation with its place in the parsed MPD.
struct Rep {
    node: usize,
    adaptation: usize,
    info: DashRepresentation,
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
                let optional =
                    |name: &str, v: Option<String>| v.map(|v| number(name, Some(v), 0)).transpose();
                let bandwidth = number("bandwidth", mpd.attr(rep, "bandwidth")?, 0)?;
                let template = |name: &str| -> Result<Option<String>> {
                    let levels = [rep, set, period].into_iter();
                    for t in levels.flat_map(|l| mpd.children(l, "SegmentTemplate")) {
                        if let Some(v) = mpd.attr(t, name)? {
                            return Ok(Some(v));
                        }
                    }
                    Ok(None)
                };
                let inherited = |name: &str| -> Result<Option<String>> {
                    Ok(mpd.attr(rep, name)?.or(mpd.attr(set, name)?))
                };
                let media = template("media")?.ok_or_else(|| {
                    bad("only SegmentTemplate@media addressing is supported".into())
                })?;
                let start_number = number("startNumber", template("startNumber")?, 1)?;
                let timescale = number("timescale", template("timescale")?, 1)?.max(1);
                let segment_duration = match template("duration")? {
                    Some(d) => d
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| bad(format!("bad duration {d:?}")))?,
                    None => 0.0,
                } / timescale as f64;
                let uri = expand_template(&media, &id, bandwidth, Some(start_number))
                    .ok_or_else(|| bad(format!("unsupported media template {media:?}")))?;
                let key = resolve(dir, &uri)?;
                reps.push(Rep {
                    node: rep,
                    adaptation: set,
                    info: DashRepresentation {
                        bandwidth,
                        codecs: inherited("codecs")?,
                        width: optional("width", mpd.attr(rep, "width")?)?,
                        height: optional("height", mpd.attr(rep, "height")?)?,
                        content_type: match inherited("contentType")? {
                            Some(t) => Some(t),
                            None => inherited("mimeType")?,
                        },
                        initialization: template("initialization")?,
                        media,
                        start_number,
                        segment_duration,
                        rendition: dir_of(&key).to_owned(),
                        id,
                    },
                });
            }
        }
    }
    Ok(reps)
}

/// Read a packaged MPD whose object key is `mpd_key`: its duration and every
/// Representation, in document order.
pub fn read_dash(packaged: &str, mpd_key: &str) -> Result<DashManifest, ManifestError> {
    let mpd = parse_mpd(packaged)?;
    let (duration, reps) = read(&mpd, mpd_key)?;
    Ok(DashManifest {
        duration,
        representations: reps.into_iter().map(|r| r.info).collect(),
    })
}

/// The duration and Representations: what `read_dash` answers and `dash_mpd`
/// rewrites, read the same way for both.
fn read(mpd: &Mpd, mpd_key: &str) -> Result<(Option<f64>, Vec<Rep>)> {
    let duration = match mpd.attr(mpd.root, "mediaPresentationDuration")? {
        Some(d) => Some(
            xs_duration(&d)
                .ok_or_else(|| unusable(format!("bad mediaPresentationDuration {d:?}")))?,
        ),
        None => None,
    };
    Ok((duration, representations(mpd, mpd_key)?))
}

/// An `xs:duration` (`PT12.0S`, `P1DT2H3M4.5S`) in seconds. Years and months
/// count 365 and 30 days: nothing here needs calendar precision.
pub(super) fn xs_duration(s: &str) -> Option<f64> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let sum = |part: &str, units: &[(char, f64)]| -> Option<f64> {
        let mut total = 0.0;
        let mut number = String::new();
        let mut next = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let i = units[next..].iter().position(|(u, _)| *u == c)? + next;
            total += number.parse::<f64>().ok()? * units[i].1;
            number.clear();
            next = i + 1;
        }
        number.is_empty().then_some(total)
    };
    let days = sum(
        date,
        &[
            ('Y', 365.0 * 86_400.0),
            ('M', 30.0 * 86_400.0),
            ('D', 86_400.0),
        ],
    )?;
    let secs = time.map_or(Some(0.0), |t| {
        sum(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])
    })?;
    let total = days + secs;
    (total.is_finite() && (date.len() + time.map_or(0, str::len)) > 0).then_some(total)
}

/// The rendition ids a packaged DASH MPD defines, in document order (so callers can
/// list/filter them without parsing XML themselves).
pub fn dash_renditions(packaged: &str, mpd_key: &str) -> Result<Vec<String>, ManifestError> {
    let mut seen = HashSet::new();
    Ok(read_dash(packaged, mpd_key)?
        .representations
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
    let (_, reps) = read(&mpd, mpd_key)?;
    let mut dropped = vec![false; mpd.nodes.len()];
    for r in &reps {
        dropped[r.node] = !keep(&r.info.rendition);
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

/// What a protected title's manifests signal: its key ID and the play's
/// licence URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    pub kid: [u8; 16],
    pub licence_url: String,
}

/// The W3C Clear Key system, as DASH names it.
const CLEARKEY_SCHEME: &str = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e";

fn uuid(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `mpd` (a per-play MPD) with Common Encryption signalled in every
/// AdaptationSet: `urn:mpeg:dash:mp4protection:2011` (`cenc`) with
/// `cenc:default_KID`, and W3C Clear Key with the play's licence URL in
/// `dashif:laurl` (what dash.js and Shaka read), the namespaces declared on
/// the MPD element.
pub fn protect_mpd(mpd_text: &str, p: &Protection) -> Result<String, ManifestError> {
    let mpd = parse_mpd(mpd_text)?;
    let kid = uuid(&p.kid);
    let sets: HashSet<usize> = mpd
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.name == "AdaptationSet")
        .map(|(i, _)| i)
        .collect();
    if sets.is_empty() {
        return Err(unusable("no AdaptationSet to protect"));
    }
    let root = &mpd.nodes[mpd.root];
    let prefix = root.qname.strip_suffix("MPD").unwrap_or_default();
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    let write_err = |e: std::io::Error| unusable(format!("writing the MPD: {e}"));
    for (i, ev) in mpd.events.iter().enumerate() {
        if i == root.start {
            let (Event::Start(e) | Event::Empty(e)) = ev else {
                return Err(unusable("the MPD element is not an element"));
            };
            let mut e = e.to_owned();
            let has = |name: &str| e.attributes().flatten().any(|a| a.key.as_ref() == name);
            let (cenc, dashif) = (has("xmlns:cenc"), has("xmlns:dashif"));
            if !cenc {
                e.push_attribute(("xmlns:cenc", "urn:mpeg:cenc:2013"));
            }
            if !dashif {
                e.push_attribute(("xmlns:dashif", "https://dashif.org/CPS"));
            }
            let ev = match ev {
                Event::Start(_) => Event::Start(e),
                _ => Event::Empty(e),
            };
            w.write_event(ev).map_err(write_err)?;
            continue;
        }
        w.write_event(ev.borrow()).map_err(write_err)?;
        let set = sets.iter().find(|&&s| mpd.nodes[s].start == i);
        if let (Some(_), Event::Start(_)) = (set, ev) {
            let cp = format!("{prefix}ContentProtection");
            let mut mp4 = BytesStart::new(cp.clone());
            mp4.push_attribute(("schemeIdUri", "urn:mpeg:dash:mp4protection:2011"));
            mp4.push_attribute(("value", "cenc"));
            mp4.push_attribute(("cenc:default_KID", kid.as_str()));
            w.write_event(Event::Empty(mp4)).map_err(write_err)?;
            let mut ck = BytesStart::new(cp.clone());
            ck.push_attribute(("schemeIdUri", CLEARKEY_SCHEME));
            ck.push_attribute(("value", "ClearKey1.0"));
            w.write_event(Event::Start(ck)).map_err(write_err)?;
            let la = BytesStart::new("dashif:laurl");
            w.write_event(Event::Start(la.clone())).map_err(write_err)?;
            w.write_event(Event::Text(BytesText::new(&p.licence_url)))
                .map_err(write_err)?;
            w.write_event(Event::End(la.to_end())).map_err(write_err)?;
            w.write_event(Event::End(BytesStart::new(cp).to_end().into_owned()))
                .map_err(write_err)?;
        }
    }
    let mut out = w.into_inner();
    out.push(b'\n');
    String::from_utf8(out).map_err(|_| unusable("MPD is not UTF-8"))
}
