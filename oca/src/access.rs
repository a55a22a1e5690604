//! Who may fetch objects: every request carries a signed-URL token (see the
//! `urlsign` crate), unless the operator explicitly configured `access = "open"`.
//!
//! The key set is swapped atomically on reload (file change or SIGHUP), so the
//! hot path reads it without a lock and a bad new file never replaces a good one.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Deserialize;
use urlsign::{KeyError, KeySet, Reject};

/// Whether object requests need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Every object request must carry a valid token (the default).
    Token,
    /// No token needed: only for a private origin or a lab, and never by default.
    Open,
}

/// Identity of the key file as last loaded, to notice changes cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i128,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The access policy and the live key set.
pub struct Access {
    mode: AccessMode,
    keys: ArcSwap<KeySet>,
    keys_path: Option<PathBuf>,
    loaded: Mutex<Option<Stamp>>,
    skew_secs: u64,
}

impl Access {
    /// Load the key set (required in token mode).
    pub fn new(
        mode: AccessMode,
        keys_path: Option<&Path>,
        skew_secs: u64,
    ) -> Result<Access, KeyError> {
        let (keys, loaded) = match (mode, keys_path) {
            (_, Some(p)) => {
                let before = stamp(p);
                (KeySet::load(p)?, before)
            }
            // No file: keys arrive from the control plane (or its cache) via `install`.
            (_, None) => (KeySet::default(), None),
        };
        Ok(Access {
            mode,
            keys: ArcSwap::from_pointee(keys),
            keys_path: keys_path.map(Path::to_path_buf),
            loaded: Mutex::new(loaded),
            skew_secs,
        })
    }

    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// Key ids currently loaded, for /health.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.load().ids().map(str::to_owned).collect()
    }

    /// Decide whether a request for `path` (decoded, with a leading `/`) from
    /// `client` at `now` (unix seconds) may be served.
    pub fn check(
        &self,
        token: Option<&[u8]>,
        path: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<(), Reject> {
        if self.mode == AccessMode::Open {
            return Ok(());
        }
        let token = token.ok_or(Reject::Missing)?;
        let token = std::str::from_utf8(token).map_err(|_| Reject::Malformed)?;
        urlsign::verify(&self.keys.load(), token, path, client, now, self.skew_secs)
    }

    /// Whether keys come from a file (then the control plane's are not used).
    pub fn keys_from_file(&self) -> bool {
        self.keys_path.is_some()
    }

    /// Install a key set obtained elsewhere (the control plane).
    pub fn install(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
    }

    /// Reload the key file if it changed since the last load (or always, with
    /// `force`). A file that fails to load leaves the current keys in place.
    /// Returns whether new keys were installed.
    pub fn reload(&self, force: bool) -> Result<bool, KeyError> {
        let Some(path) = &self.keys_path else {
            return Ok(false);
        };
        let now = stamp(path);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !force && now == *loaded {
            return Ok(false);
        }
        // Record the attempt either way, so a broken file is reported once, not every poll.
        *loaded = now;
        let keys = KeySet::load(path)?;
        self.keys.store(Arc::new(keys));
        Ok(true)
    }
}
