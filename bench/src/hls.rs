//! What a player reads: HLS multivariant and media playlists (steering's and
//! ffmpeg's), content-steering answers, and the choice of pathway.
//!
//! Playlists are parsed with m3u8-rs, the library steering writes them with,
//! so both sides agree on the grammar; what m3u8-rs leaves generic
//! (PATHWAY-ID, EXT-X-CONTENT-STEERING) is read from its attribute maps and
//! unknown tags here. Everything a player cannot act on is an error naming
//! what was wrong, never a panic: a garbage playlist ends one play, not the run.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use m3u8_rs::QuotedOrUnquoted;
use serde::Deserialize;

use crate::url::Url;

/// Pathway of variants without a PATHWAY-ID (the HLS default pathway).
pub const DEFAULT_PATHWAY: &str = ".";

/// One variant stream on one pathway.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub bandwidth: u64,
    pub url: Url,
}

/// The parts of a multivariant playlist a player uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Multivariant {
    /// Pathways in playlist order, each with its variants by ascending
    /// bandwidth. Steering lists the same variants on every pathway, so an
    /// index into one ladder names the same rendition on another.
    pub pathways: Vec<(String, Vec<Variant>)>,
    /// `EXT-X-CONTENT-STEERING`'s PATHWAY-ID: where to start before steering
    /// has been asked.
    pub primary: Option<String>,
    /// `EXT-X-CONTENT-STEERING`'s SERVER-URI.
    pub steering: Option<Url>,
}

impl Multivariant {
    pub fn ladder(&self, pathway: &str) -> Option<&[Variant]> {
        self.pathways
            .iter()
            .find(|(id, _)| id == pathway)
            .map(|(_, v)| v.as_slice())
    }

    pub fn pathway_ids(&self) -> impl Iterator<Item = &str> + Clone {
        self.pathways.iter().map(|(id, _)| id.as_str())
    }
}

/// Parses a multivariant playlist fetched from `base` (URIs resolve against it).
pub fn parse_multivariant(bytes: &[u8], base: &Url) -> Result<Multivariant> {
    if !bytes.starts_with(b"#EXTM3U") {
        bail!("not an HLS playlist (no #EXTM3U)");
    }
    if !m3u8_rs::is_master_playlist(bytes) {
        bail!("a media playlist where a multivariant playlist was expected");
    }
    let pl = m3u8_rs::parse_master_playlist_res(bytes)
        .map_err(|_| anyhow!("unparseable multivariant playlist"))?;
    let mut pathways: Vec<(String, Vec<Variant>)> = Vec::new();
    for v in pl.variants.iter().filter(|v| !v.is_i_frame) {
        let pathway = match v
            .other_attributes
            .as_ref()
            .and_then(|a| a.get("PATHWAY-ID"))
        {
            Some(QuotedOrUnquoted::Quoted(p) | QuotedOrUnquoted::Unquoted(p)) => {
                check_pathway_id(p)?;
                p.clone()
            }
            None => DEFAULT_PATHWAY.to_owned(),
        };
        let url = base
            .join(&v.uri)
            .with_context(|| format!("variant URI {:?}", v.uri))?;
        let variant = Variant {
            bandwidth: v.bandwidth,
            url,
        };
        match pathways.iter_mut().find(|(id, _)| *id == pathway) {
            Some((_, ladder)) => ladder.push(variant),
            None => pathways.push((pathway, vec![variant])),
        }
    }
    if pathways.is_empty() {
        bail!("multivariant playlist has no variants");
    }
    for (_, ladder) in &mut pathways {
        ladder.sort_by_key(|v| v.bandwidth);
    }
    let mut primary = None;
    let mut steering = None;
    if let Some(tag) = pl
        .unknown_tags
        .iter()
        .find(|t| t.tag == "X-CONTENT-STEERING")
    {
        let attrs = attributes(tag.rest.as_deref().unwrap_or(""))?;
        if let Some(uri) = attrs.get("SERVER-URI") {
            steering = Some(base.join(uri).context("content-steering SERVER-URI")?);
        }
        if let Some(p) = attrs.get("PATHWAY-ID") {
            check_pathway_id(p)?;
            primary = Some(p.clone());
        }
    }
    Ok(Multivariant {
        pathways,
        primary,
        steering,
    })
}

/// One media segment, with the initialisation section it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub url: Url,
    pub duration: Duration,
    /// `EXT-X-MAP` in effect for this segment (the tag applies to every
    /// segment after it until the next one).
    pub init: Option<Url>,
}

/// A media playlist's segments, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub segments: Vec<Segment>,
    /// Key IDs of W3C Clear Key protected segments (`EXT-X-KEY` with
    /// `KEYFORMAT="org.w3.clearkey"` and the key ID as a data URI): a
    /// player needs their licence before it can show them.
    pub clear_key_ids: Vec<[u8; 16]>,
}

impl Media {
    pub fn total(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// The segment to start at for a resume position, and where it begins:
    /// players start at the segment holding the position.
    pub fn seek(&self, position: Duration) -> (usize, Duration) {
        let mut start = Duration::ZERO;
        for (i, s) in self.segments.iter().enumerate() {
            if position < start + s.duration {
                return (i, start);
            }
            start += s.duration;
        }
        (self.segments.len(), start)
    }
}

/// Parses a media playlist fetched from `base`.
pub fn parse_media(bytes: &[u8], base: &Url) -> Result<Media> {
    if !bytes.starts_with(b"#EXTM3U") {
        bail!("not an HLS playlist (no #EXTM3U)");
    }
    if m3u8_rs::is_master_playlist(bytes) {
        bail!("a multivariant playlist where a media playlist was expected");
    }
    let pl = m3u8_rs::parse_media_playlist_res(bytes)
        .map_err(|_| anyhow!("unparseable media playlist"))?;
    if pl.i_frames_only {
        bail!("I-frame-only playlists are not played");
    }
    let mut init: Option<Url> = None;
    let mut segments = Vec::with_capacity(pl.segments.len());
    let mut clear_key_ids: Vec<[u8; 16]> = Vec::new();
    for s in &pl.segments {
        if let Some(key) = &s.key
            && key.keyformat.as_deref() == Some("org.w3.clearkey")
        {
            let kid = key
                .uri
                .as_deref()
                .and_then(|u| u.split_once("base64,"))
                .and_then(|(_, b)| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                })
                .and_then(|v| v.get(..16).and_then(|k| <[u8; 16]>::try_from(k).ok()))
                .ok_or_else(|| {
                    anyhow!("EXT-X-KEY for org.w3.clearkey without a key ID data URI")
                })?;
            if !clear_key_ids.contains(&kid) {
                clear_key_ids.push(kid);
            }
        }
        // Byte ranges would need Range requests per segment; steering's
        // packages (and oca's inventory) are one file per segment.
        if s.byte_range.is_some() {
            bail!("EXT-X-BYTERANGE segments are not supported");
        }
        if let Some(map) = &s.map {
            if map.byte_range.is_some() {
                bail!("EXT-X-MAP with BYTERANGE is not supported");
            }
            init = Some(base.join(&map.uri).context("EXT-X-MAP URI")?);
        }
        let duration = Duration::try_from_secs_f32(s.duration)
            .map_err(|_| anyhow!("segment {:?}: bad duration {}", s.uri, s.duration))?;
        segments.push(Segment {
            url: base
                .join(&s.uri)
                .with_context(|| format!("segment URI {:?}", s.uri))?,
            duration,
            init: init.clone(),
        });
    }
    if segments.is_empty() {
        bail!("media playlist has no segments");
    }
    Ok(Media {
        segments,
        clear_key_ids,
    })
}

/// A content-steering answer (HLS content steering, VERSION 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Steering {
    pub ttl: Duration,
    pub priority: Vec<String>,
    /// Where to poll next (`RELOAD-URI`), if the server moved it.
    pub reload: Option<Url>,
}

/// Players re-poll no faster than this, whatever TTL a server sends.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// TTL when the answer gives none (the spec's default).
const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct SteeringWire {
    #[serde(rename = "VERSION")]
    version: u64,
    #[serde(rename = "TTL")]
    ttl: Option<f64>,
    #[serde(rename = "PATHWAY-PRIORITY")]
    priority: Vec<String>,
    #[serde(rename = "RELOAD-URI")]
    reload: Option<String>,
}

/// Parses a content-steering answer fetched from `base`.
pub fn parse_steering(bytes: &[u8], base: &Url) -> Result<Steering> {
    let w: SteeringWire = serde_json::from_slice(bytes)
        .context("content-steering answer is not the JSON expected")?;
    if w.version != 1 {
        bail!("content-steering VERSION {} (only 1 is known)", w.version);
    }
    for p in &w.priority {
        check_pathway_id(p)?;
    }
    let ttl = match w.ttl {
        None => DEFAULT_TTL,
        Some(t) => Duration::try_from_secs_f64(t)
            .map_err(|_| anyhow!("content-steering TTL {t} is not a duration"))?,
    };
    let reload = w
        .reload
        .map(|r| base.join(&r))
        .transpose()
        .context("content-steering RELOAD-URI")?;
    Ok(Steering {
        ttl: ttl.max(MIN_TTL),
        priority: w.priority,
        reload,
    })
}

/// The pathway to play from: the first of `priority` the playlist has and
/// that has not failed this play; else the playlist's primary; else the first
/// in playlist order. `None` when every pathway has failed.
pub fn pick_pathway<'a>(
    available: impl Iterator<Item = &'a str> + Clone,
    priority: &'a [String],
    primary: Option<&'a str>,
    failed: &[String],
) -> Option<&'a str> {
    let usable = |p: &str| available.clone().any(|a| a == p) && !failed.iter().any(|f| f == p);
    priority
        .iter()
        .map(String::as_str)
        .chain(primary)
        .chain(available.clone())
        .find(|p| usable(p))
}

/// The HLS spec's character set for pathway ids; they end up in query
/// strings and report keys, so anything else is refused.
fn check_pathway_id(p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("pathway id {p:?} is not [A-Za-z0-9._-]+");
    }
    Ok(())
}

/// An attribute list `NAME=value,NAME="quoted, value"` (quotes removed).
fn attributes(s: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| anyhow!("bad attribute list {s:?}"))?;
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| anyhow!("unclosed quote in {s:?}"))?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_at(after.find(',').unwrap_or(after.len()))
        };
        out.insert(name.trim().to_owned(), value.to_owned());
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            bail!("bad attribute list {s:?}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
