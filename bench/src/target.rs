//! The server under test: its base URL, and the request path for each key.
//!
//! Parsed by hand rather than with the `url` crate: we accept only
//! `http[s]://host[:port][/base]`, and the rules that matter here (what goes in
//! `Host`, in SNI, and how a key is escaped) are a few lines, while `url` and its
//! IDNA tables would be most of this binary's dependencies.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{Result, anyhow, bail};

/// A parsed base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    pub tls: bool,
    /// Host name or IP literal without brackets: for SNI and name resolution.
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header: host as written, with the port if not default.
    pub authority: String,
    /// Path prefix without a trailing '/', e.g. "" or "/cdn".
    pub base_path: String,
}

impl Target {
    /// Parses `http://host[:port][/base]` or `https://…`.
    pub fn parse(url: &str) -> Result<Target> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            bail!("target {url:?} must start with http:// or https://");
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            bail!("target {url:?} must not have a query or fragment");
        }
        if authority.is_empty() || authority.contains('@') {
            bail!("target {url:?} needs a host (and no user info)");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("target {url:?}: unclosed '[' in host"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').unwrap_or("x"), url)?,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), parse_port(p, url)?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            bail!("target {url:?} needs a host");
        }
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(Target {
            url: url.to_owned(),
            tls,
            host,
            port,
            authority,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for a key: base path + "/" + key, with every byte
    /// outside RFC 3986 unreserved characters and '/' percent-encoded, so keys
    /// with spaces or non-ASCII names reach the file they name.
    pub fn path_for(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.base_path.len() + 1 + key.len());
        out.push_str(&self.base_path);
        out.push('/');
        for &b in key.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                out.push(b as char);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
        out
    }

    /// Resolves the host once, before the run, preferring an address of the
    /// same family as the first `--bind` address (a v4 source cannot reach a v6
    /// destination).
    pub fn resolve(&self, bind: Option<IpAddr>) -> Result<SocketAddr> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| anyhow!("cannot resolve {}: {e}", self.host))?
            .collect();
        let pick = match bind {
            Some(b) => addrs.iter().find(|a| a.is_ipv4() == b.is_ipv4()),
            None => addrs.first(),
        };
        pick.copied()
            .ok_or_else(|| anyhow!("{} has no address usable from --bind", self.host))
    }
}

fn parse_port(p: &str, url: &str) -> Result<u16> {
    p.parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| anyhow!("target {url:?}: bad port {p:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.authority.as_str()),
            (false, "127.0.0.1", 8080, "127.0.0.1:8080")
        );
        assert_eq!(t.base_path, "");

        let t = Target::parse("https://cdn.example/base/").unwrap();
        assert_eq!(
            (t.tls, t.port, t.authority.as_str()),
            (true, 443, "cdn.example")
        );
        assert_eq!(t.base_path, "/base");

        let t = Target::parse("http://[::1]:81/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert_eq!(t.authority, "[::1]:81");

        let t = Target::parse("http://[::1]").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 80, "[::1]")
        );

        let t = Target::parse("http://h:80/").unwrap();
        assert_eq!(t.authority, "h", "default port left out of Host");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://h",
            "h:80",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h:70000",
            "http://[::1",
            "http://h/?q",
            "http://u@h",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_escaped_paths() {
        let t = Target::parse("http://h/cdn").unwrap();
        assert_eq!(
            t.path_for("titles/t1/v720/seg-00001.m4s"),
            "/cdn/titles/t1/v720/seg-00001.m4s"
        );
        assert_eq!(t.path_for("a b/ü%?#~_.-"), "/cdn/a%20b/%C3%BC%25%3F%23~_.-");
        let t = Target::parse("http://h").unwrap();
        assert_eq!(t.path_for("k"), "/k");
    }
}
