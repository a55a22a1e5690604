//! Absolute http(s) URLs as players meet them (play answers, playlist URIs,
//! content-steering answers) and RFC 3986 reference resolution.
//!
//! By hand for the reason given in target.rs (whose authority parsing this
//! reuses): only http and https are wanted, and resolution is the few rules of
//! RFC 3986 §5.2. What matters more here is that every URL ends up in a request
//! line, so anything that could break out of one (spaces, control bytes) is
//! refused, and bytes beyond ASCII are percent-encoded.

use std::fmt;

use anyhow::{Result, bail};

use crate::target::Target;

/// An absolute http or https URL, without a fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    pub tls: bool,
    /// Host name or IP literal without brackets: for name resolution and SNI.
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header.
    pub authority: String,
    /// Request target: path and query, always starting with '/'.
    pub path: String,
}

impl Url {
    /// Parses `http[s]://authority[/path][?query][#fragment]`.
    pub fn parse(s: &str) -> Result<Url> {
        let s = strip_fragment(s.trim());
        if s.is_empty() {
            bail!("empty URL");
        }
        check_chars(s)?;
        let (tls, rest) = match scheme(s) {
            Some((sch, rest)) if sch.eq_ignore_ascii_case("http") => (false, rest),
            Some((sch, rest)) if sch.eq_ignore_ascii_case("https") => (true, rest),
            _ => bail!("{s:?} is not an http:// or https:// URL"),
        };
        let Some(rest) = rest.strip_prefix("//") else {
            bail!("{s:?} has no host");
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let t = Target::parse(&format!(
            "{}://{authority}",
            if tls { "https" } else { "http" }
        ))?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Url {
            tls,
            host: t.host,
            port: t.port,
            authority: t.authority,
            path: encode_non_ascii(&path),
        })
    }

    /// Resolves a reference (absolute, `//host/…`, `/path`, `?query` or a
    /// relative path) against this URL, as RFC 3986 §5.2 says.
    pub fn join(&self, reference: &str) -> Result<Url> {
        let r = strip_fragment(reference.trim());
        check_chars(r)?;
        if scheme(r).is_some() {
            return Url::parse(r);
        }
        if r.starts_with("//") {
            let sch = if self.tls { "https:" } else { "http:" };
            return Url::parse(&format!("{sch}{r}"));
        }
        let (base_path, base_query) = split_query(&self.path);
        let (ref_path, ref_query) = split_query(r);
        let path = if ref_path.is_empty() {
            base_path.to_owned()
        } else if ref_path.starts_with('/') {
            remove_dot_segments(ref_path)
        } else {
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            remove_dot_segments(&format!("{dir}{ref_path}"))
        };
        let query = if ref_path.is_empty() && ref_query.is_none() {
            base_query
        } else {
            ref_query
        };
        let mut path = encode_non_ascii(&path);
        if let Some(q) = query {
            path.push('?');
            path.push_str(&encode_non_ascii(q));
        }
        Ok(Url {
            path,
            ..self.clone()
        })
    }

    /// This URL with `name=value` added to its query (`value` must need no
    /// escaping: callers pass pathway ids, which are `[A-Za-z0-9._-]`).
    pub fn with_param(&self, name: &str, value: &str) -> Url {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        Url {
            path: format!("{}{sep}{name}={value}", self.path),
            ..self.clone()
        }
    }

    /// This URL moved from under `from` (same origin, path below `from`'s)
    /// to under `to`: a play-scoped URL one steering instance issued, sent to
    /// another (they share the store and the signing keys). `None` if it is
    /// not under `from`.
    pub fn rebased(&self, from: &Url, to: &Url) -> Option<Url> {
        if self.origin() != from.origin() {
            return None;
        }
        let rest = self.path.strip_prefix(from.path.trim_end_matches('/'))?;
        if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
            return None;
        }
        Some(Url {
            tls: to.tls,
            host: to.host.clone(),
            port: to.port,
            authority: to.authority.clone(),
            path: format!("{}{rest}", to.path.trim_end_matches('/')),
        })
    }

    /// Whether this URL lies under `base` (what `rebased` can move).
    pub fn is_under(&self, base: &Url) -> bool {
        self.rebased(base, base).is_some()
    }

    /// Connections are shared between URLs with the same key.
    pub fn origin(&self) -> (bool, &str) {
        (self.tls, &self.authority)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// `(scheme, rest)` if `s` starts with a URI scheme and ':'.
fn scheme(s: &str) -> Option<(&str, &str)> {
    let (sch, rest) = s.split_once(':')?;
    let mut bytes = sch.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some((sch, rest))
}

fn strip_fragment(s: &str) -> &str {
    s.split_once('#').map_or(s, |(a, _)| a)
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    }
}

/// URLs go into request lines: whitespace and control bytes could end one.
fn check_chars(s: &str) -> Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        bail!("{s:?}: {c:?} is not allowed in a URL");
    }
    Ok(())
}

/// Percent-encodes the bytes of non-ASCII characters (IRIs in playlists);
/// ASCII, including existing escapes, is kept as written.
fn encode_non_ascii(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() * 2);
    for &b in s.as_bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segs.len());
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // A trailing "." or ".." names a directory: keep the slash.
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = Url::parse("http://127.0.0.1:8080/v1/plays/ab/master.m3u8?x=1#frag").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.authority.as_str()),
            (false, "127.0.0.1", 8080, "127.0.0.1:8080")
        );
        assert_eq!(u.path, "/v1/plays/ab/master.m3u8?x=1");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:8080/v1/plays/ab/master.m3u8?x=1"
        );
        let u = Url::parse("HTTPS://[::1]").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/"));
        assert_eq!(u.to_string(), "https://[::1]/");
        assert_eq!(Url::parse("http://h?q").unwrap().path, "/?q");
        assert_eq!(Url::parse("http://h/ü").unwrap().path, "/%C3%BC");
    }

    #[test]
    fn refuses_what_cannot_be_requested() {
        for bad in [
            "",
            "ftp://h/x",
            "h/x",
            "/x",
            "http:/h",
            "http://",
            "http://h:0/",
            "http://u@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h/a\tb",
            "mailto:x@y",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolves_rfc3986_examples() {
        // RFC 3986 §5.4.1 and §5.4.2, with http://a/b/c/d;p?q as the base.
        let base = Url::parse("http://a/b/c/d;p?q").unwrap();
        for (r, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("https://x:8443/y", "https://x:8443/y"),
        ] {
            assert_eq!(base.join(r).unwrap().to_string(), want, "{r:?}");
        }
    }

    #[test]
    fn resolves_playlist_uris() {
        let media = Url::parse("http://127.0.0.1:4000/t/tok.en/titles/t1/v360/index.m3u8").unwrap();
        assert_eq!(
            media.join("seg-00000.m4s").unwrap().to_string(),
            "http://127.0.0.1:4000/t/tok.en/titles/t1/v360/seg-00000.m4s"
        );
        assert_eq!(
            media.join("../v720/init_2.mp4").unwrap().path,
            "/t/tok.en/titles/t1/v720/init_2.mp4"
        );
        assert!(media.join("gopher://x/").is_err());
        assert!(media.join("a b").is_err());
        assert_eq!(
            media.with_param("_HLS_pathway", "oca-a1").path,
            "/t/tok.en/titles/t1/v360/index.m3u8?_HLS_pathway=oca-a1"
        );
        let q = Url::parse("http://s/steer?a=1").unwrap();
        assert_eq!(q.with_param("b", "2").path, "/steer?a=1&b=2");
    }

    #[test]
    fn rebased_moves_urls_under_one_base_to_another() {
        let a = Url::parse("http://127.0.0.1:8080/steer/").unwrap();
        let b = Url::parse("https://steer-b.example:8443/").unwrap();
        let u = Url::parse("http://127.0.0.1:8080/steer/v1/plays/p1/master.m3u8?t=x").unwrap();
        assert_eq!(
            u.rebased(&a, &b).unwrap().to_string(),
            "https://steer-b.example:8443/v1/plays/p1/master.m3u8?t=x"
        );
        assert_eq!(u.rebased(&a, &a).unwrap(), u);
        assert!(u.is_under(&a) && !u.is_under(&b));
        // Another origin, or a path that only shares a prefix, is not under it.
        assert!(u.rebased(&b, &a).is_none());
        let sibling = Url::parse("http://127.0.0.1:8080/steering/v1/play").unwrap();
        assert!(sibling.rebased(&a, &b).is_none());
    }
}
