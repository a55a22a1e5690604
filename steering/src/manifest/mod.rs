//! Per-play manifests: the packaged HLS multivariant playlist or DASH MPD of a title,
//! filtered to the renditions a play may use, with every URL pointing at the chosen
//! pathways (appliances, or the origin) and, when asked, content-steering information.
//!
//! Rendition ids are the object-key directories the catalog uses ("titles/t1/v720"),
//! so a caller can filter with the same ids it stores.
//!
//! The catalog import reads packaged manifests through this module too (`read_dash`,
//! `resolve`, and by trying the rewrite), so a manifest is read by one set of rules
//! whether it is being imported or played: what import accepts, plays can serve.
//!
//! HLS is read and written with m3u8-rs (`hls`); DASH with quick-xml events (`dash`,
//! which says why not a typed MPD model).

use std::collections::HashSet;

mod dash;
mod hls;

pub use dash::{
    DashManifest, DashRepresentation, Protection, dash_mpd, dash_renditions, protect_mpd, read_dash,
};
pub use hls::{hls_multivariant, protect_master};

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

pub(crate) fn unusable(reason: impl Into<String>) -> ManifestError {
    ManifestError::Packaged(reason.into())
}

pub(crate) fn invalid(reason: String) -> ManifestError {
    ManifestError::Invalid(reason)
}

pub(crate) type Result<T, E = ManifestError> = std::result::Result<T, E>;

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
pub fn dir_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Resolve a packaged relative URI against the directory `dir` (an object key's
/// directory, "titles/t1") into an object key: the one resolver for import and plays.
/// Anything that could escape the title or that an appliance cannot serve as a plain
/// object (absolute URLs, queries, fragments, `..`, empty segments, characters that
/// need escaping) is refused; `.` segments name the same directory and are dropped, so
/// keys and rendition ids never contain them.
pub fn resolve(dir: &str, uri: &str) -> Result<String> {
    let bad = || {
        unusable(format!(
            "URI {uri:?} is not a relative path inside the title"
        ))
    };
    if uri.is_empty()
        || uri.contains("://")
        || uri.starts_with('/')
        || uri.contains(['?', '#', '"', '\\'])
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let mut key = dir.to_owned();
    let mut named = false;
    for seg in uri.split('/').filter(|s| *s != ".") {
        if seg.is_empty() || seg == ".." {
            return Err(bad());
        }
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(seg);
        named = true;
    }
    // "." alone names the directory, not an object in it.
    if !named {
        return Err(bad());
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

pub(crate) fn check_pathways(
    pathways: &[Pathway],
    steering: Option<&ContentSteering>,
) -> Result<()> {
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

#[cfg(test)]
mod tests;
