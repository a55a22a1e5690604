//! Who may call the admin listener. Each caller (steering's health poller,
//! Prometheus, the local fill-agent, an operator) has a bearer token of its
//! own and the endpoints it may use, one line each in the callers file:
//!
//! ```text
//! # name       may                        token
//! steering     health,renditions          3f9c0d…
//! prometheus   metrics                    a81b77…
//! fill-agent   health,refresh             77de01…
//! ```
//!
//! Tokens are kept only as SHA-256 digests and looked up by digest, so a
//! comparison never runs byte by byte over a secret. [`Callers`] is pure
//! (the file's text in, answers out); [`CallersFile`] reads the file and
//! takes a rewritten one (on SIGHUP, or within seconds of a change), so a
//! revoked token stops working without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use ring::digest;

/// The callers file in use, swapped whole when it is rewritten.
pub struct CallersFile {
    path: PathBuf,
    current: ArcSwap<Callers>,
    modified: Mutex<Option<SystemTime>>,
}

impl CallersFile {
    /// Read and parse `path`; an error names the file and the line.
    pub fn load(path: &Path) -> Result<CallersFile, String> {
        let (callers, modified) = read(path)?;
        Ok(CallersFile {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(callers),
            modified: Mutex::new(modified),
        })
    }

    pub fn current(&self) -> Arc<Callers> {
        self.current.load_full()
    }

    /// Read the file again if `force` or it changed since; `Ok(true)` when a
    /// new set is in use. A file that fails to parse changes nothing.
    pub fn reload(&self, force: bool) -> Result<bool, String> {
        let now = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut seen = self.modified.lock().unwrap_or_else(|e| e.into_inner());
        if !force && now == *seen {
            return Ok(false);
        }
        let (callers, modified) = read(&self.path)?;
        self.current.store(Arc::new(callers));
        *seen = modified;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read(path: &Path) -> Result<(Callers, Option<SystemTime>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let callers = Callers::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the admin callers file is readable by others; chmod 600 it");
        }
    }
    Ok((callers, meta.modified().ok()))
}

/// What a caller may do: one endpoint family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET /health` in full (disks, keys, BGP sessions, fill state).
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /store/renditions`.
    Renditions,
    /// `POST /store/refresh/<key>`.
    Refresh,
}

impl Scope {
    const ALL: [(Scope, &'static str); 4] = [
        (Scope::Health, "health"),
        (Scope::Metrics, "metrics"),
        (Scope::Renditions, "renditions"),
        (Scope::Refresh, "refresh"),
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn name(self) -> &'static str {
        Scope::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("", |(_, n)| n)
    }

    fn parse(word: &str) -> Option<u8> {
        if word == "all" {
            return Some(Scope::ALL.iter().fold(0, |m, (s, _)| m | s.bit()));
        }
        Scope::ALL
            .iter()
            .find(|(_, n)| *n == word)
            .map(|(s, _)| s.bit())
    }
}

/// One caller: its name (for logs) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    scopes: u8,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }
}

/// Every caller of one callers file.
#[derive(Debug, Default)]
pub struct Callers {
    by_digest: HashMap<Vec<u8>, Caller>,
}

/// The answer to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allowed(&'a Caller),
    /// 401: no credential, or one no caller has.
    Unauthenticated(&'static str),
    /// 403: a known caller without this scope.
    Forbidden(&'a Caller),
}

/// Shortest token accepted: 128 bits as hex.
pub const MIN_TOKEN_LEN: usize = 32;

impl Callers {
    /// Parse a callers file; an error names the line and what is wrong, and
    /// never quotes a token.
    pub fn parse(text: &str) -> Result<Callers, String> {
        let mut callers = Callers::default();
        let mut names = std::collections::HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let words: Vec<&str> = line.split_whitespace().collect();
            let [name, may, token] = words[..] else {
                return Err(format!(
                    "line {n}: expected `name scopes token` (three words)"
                ));
            };
            let mut scopes = 0;
            for w in may.split(',') {
                scopes |= Scope::parse(w).ok_or_else(|| {
                    format!(
                        "line {n} ({name}): unknown scope {w:?}; use health, metrics, renditions, \
                         refresh or all, comma-separated"
                    )
                })?;
            }
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {n} ({name}): the token must be at least {MIN_TOKEN_LEN} printable \
                     characters (e.g. `openssl rand -hex 32`)"
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(format!("line {n}: caller {name} is listed twice"));
            }
            let caller = Caller {
                name: name.to_owned(),
                scopes,
            };
            if callers
                .by_digest
                .insert(token_digest(token.as_bytes()), caller)
                .is_some()
            {
                return Err(format!(
                    "line {n} ({name}): this token is another caller's too; give each its own"
                ));
            }
        }
        Ok(callers)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Whether the request's `Authorization` value lets it use `scope`.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Verdict<'_> {
        let Some(value) = authorization else {
            return Verdict::Unauthenticated("credential required");
        };
        let token = match value.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return Verdict::Unauthenticated("use Authorization: Bearer <token>"),
        };
        match self.by_digest.get(&token_digest(token)) {
            None => Verdict::Unauthenticated("unknown credential"),
            Some(c) if c.may(scope) => Verdict::Allowed(c),
            Some(c) => Verdict::Forbidden(c),
        }
    }
}

fn token_digest(token: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, token).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef0123456789abcdef";
    const T2: &str = "fedcba9876543210fedcba9876543210";

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn each_caller_may_use_its_scopes_only() {
        let c = Callers::parse(&format!(
            "# who may call\n\nsteering health,renditions {T1}\nprometheus metrics {T2} # scrape\n"
        ))
        .unwrap();
        assert_eq!(c.len(), 2);
        let v = c.check(Some(&bearer(T1)), Scope::Health);
        assert!(matches!(v, Verdict::Allowed(c) if c.name == "steering"));
        assert!(matches!(
            c.check(Some(&bearer(T1)), Scope::Metrics),
            Verdict::Forbidden(c) if c.name == "steering"
        ));
        assert!(matches!(
            c.check(Some(format!("bearer  {T2} ").as_bytes()), Scope::Metrics),
            Verdict::Allowed(_)
        ));
        assert_eq!(
            c.check(None, Scope::Health),
            Verdict::Unauthenticated("credential required")
        );
        assert_eq!(
            c.check(Some(&bearer(&T1.replace('0', "1"))), Scope::Health),
            Verdict::Unauthenticated("unknown credential")
        );
        assert_eq!(
            c.check(Some(format!("Basic {T1}").as_bytes()), Scope::Health),
            Verdict::Unauthenticated("use Authorization: Bearer <token>")
        );
        assert_eq!(
            c.check(Some(b"Bear"), Scope::Health),
            Verdict::Unauthenticated("use Authorization: Bearer <token>")
        );
        let all = Callers::parse(&format!("ops all {T1}\n")).unwrap();
        for (s, _) in Scope::ALL {
            assert!(matches!(
                all.check(Some(&bearer(T1)), s),
                Verdict::Allowed(_)
            ));
        }
        assert_eq!(Scope::Refresh.name(), "refresh");
    }

    #[test]
    fn a_bad_file_names_its_line_and_never_quotes_a_token() {
        for (text, wants) in [
            ("steering health\n".to_owned(), "line 1: expected"),
            (
                format!("\nsteering helth {T1}\n"),
                "line 2 (steering): unknown scope \"helth\"",
            ),
            ("steering health short\n".to_owned(), "at least 32"),
            (format!("a health {T1}\na metrics {T2}\n"), "listed twice"),
            (
                format!("a health {T1}\nb metrics {T1}\n"),
                "another caller's",
            ),
        ] {
            let e = Callers::parse(&text).unwrap_err();
            assert!(e.contains(wants), "{e}");
            assert!(!e.contains(T1) && !e.contains(T2), "{e}");
        }
        assert!(Callers::parse("# nobody\n").unwrap().is_empty());
    }
}
