//! Key sets: several key ids live at once, so keys can rotate without a moment
//! where freshly signed tokens and the appliance's keys disagree.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::Deserialize;

/// Shortest secret accepted: HMAC-SHA256 gains nothing past 32 bytes, and loses
/// strength below it.
pub const MIN_SECRET_LEN: usize = 32;

/// One signing key.
pub struct Key {
    pub id: String,
    pub(crate) hmac: hmac::Key,
    /// Unix seconds before which the key is not yet in use (inclusive bound).
    pub not_before: Option<u64>,
    /// Unix seconds after which the key is retired (exclusive bound).
    pub not_after: Option<u64>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn new(
        id: &str,
        secret: &[u8],
        not_before: Option<u64>,
        not_after: Option<u64>,
    ) -> Result<Key, KeyError> {
        if !valid_kid(id) {
            return Err(KeyError::Invalid(format!(
                "key id {id:?}: use 1-32 of A-Z a-z 0-9 - _"
            )));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::Invalid(format!(
                "key {id}: secret is {} bytes, at least {MIN_SECRET_LEN} required",
                secret.len()
            )));
        }
        if let (Some(a), Some(b)) = (not_before, not_after)
            && a >= b
        {
            return Err(KeyError::Invalid(format!(
                "key {id}: not_before must be earlier than not_after"
            )));
        }
        Ok(Key {
            id: id.to_owned(),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret),
            not_before,
            not_after,
        })
    }

    /// Whether the key may sign or verify at `now` (unix seconds), allowing `skew`.
    pub fn usable_at(&self, now: u64, skew: u64) -> bool {
        self.not_before
            .is_none_or(|nb| now.saturating_add(skew) >= nb)
            && self
                .not_after
                .is_none_or(|na| now < na.saturating_add(skew))
    }
}

pub(crate) fn valid_kid(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { path: String, mode: u32 },
    #[error("key file: {0}")]
    Parse(String),
    #[error("key file: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    /// base64url (padding optional) of the secret bytes.
    secret: String,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

/// The live keys, looked up by id on every request (a handful at most, so a
/// linear scan beats hashing).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> Result<KeySet, KeyError> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyError::Invalid(format!("key id {} appears twice", k.id)));
            }
        }
        Ok(KeySet { keys })
    }

    /// Parse the TOML key file format:
    ///
    /// ```toml
    /// [[key]]
    /// id = "2026-11a"
    /// secret = "base64url of at least 32 random bytes"
    /// not_before = 1793491200   # optional, unix seconds
    /// not_after = 1796083200    # optional, unix seconds
    /// ```
    pub fn from_toml(text: &str) -> Result<KeySet, KeyError> {
        let file: KeyFile =
            toml::from_str(text).map_err(|e| KeyError::Parse(e.message().replace('\n', " ")))?;
        let mut keys = Vec::with_capacity(file.key.len());
        for e in file.key {
            if !valid_kid(&e.id) {
                return Err(KeyError::Invalid(format!(
                    "key id {:?}: use 1-32 of A-Z a-z 0-9 - _",
                    e.id
                )));
            }
            let secret = URL_SAFE_NO_PAD
                .decode(e.secret.trim_end_matches('='))
                .map_err(|_| KeyError::Invalid(format!("key {}: secret is not base64url", e.id)))?;
            keys.push(Key::new(&e.id, &secret, e.not_before, e.not_after)?);
        }
        KeySet::new(keys)
    }

    /// Load a key file, refusing one that group or others can read: whoever can
    /// read it can mint tokens for every object on the appliance.
    pub fn load(path: &Path) -> Result<KeySet, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown,
            source,
        })?;
        KeySet::from_toml(&text)
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to sign with at `now`: of the usable keys, the one that became
    /// valid most recently (so a new key takes over as soon as its window opens,
    /// while the old one keeps verifying tokens already handed out).
    pub fn signing_key(&self, now: u64) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|k| k.usable_at(now, 0))
            .max_by_key(|k| k.not_before.unwrap_or(0))
    }
}

/// A fresh random secret, base64url-encoded, for a new key file entry.
pub fn generate_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The system RNG failing is not recoverable in any useful way.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, extra: &str) -> String {
        format!(
            "[[key]]\nid = \"{id}\"\nsecret = \"{}\"\n{extra}\n",
            generate_secret()
        )
    }

    #[test]
    fn parses_and_picks_the_newest_usable_key() {
        let text = entry("old", "not_before = 100\nnot_after = 1000")
            + &entry("new", "not_before = 500")
            + &entry("future", "not_before = 5000");
        let ks = KeySet::from_toml(&text).unwrap();
        assert_eq!(ks.len(), 3);
        assert_eq!(ks.signing_key(200).unwrap().id, "old");
        assert_eq!(ks.signing_key(600).unwrap().id, "new");
        assert_eq!(ks.signing_key(6000).unwrap().id, "future");
        assert!(ks.signing_key(50).is_none());
        assert!(!format!("{:?}", ks.get("old").unwrap()).contains("secret"));
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            (entry("a", "") + &entry("a", ""), "twice"),
            (
                "[[key]]\nid = \"a\"\nsecret = \"c2hvcnQ\"\n".to_owned(),
                "at least 32",
            ),
            (
                "[[key]]\nid = \"a b\"\nsecret = \"x\"\n".to_owned(),
                "key id",
            ),
            (
                "[[key]]\nid = \"a\"\nsecret = \"!!!\"\n".to_owned(),
                "base64url",
            ),
            (entry("a", "not_before = 10\nnot_after = 10"), "earlier"),
            (entry("a", "colour = 1"), "colour"),
            ("key = 3".to_owned(), "key file"),
        ];
        for (text, needle) in cases {
            let err = KeySet::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, entry("a", "")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeySet::load(&path),
            Err(KeyError::Permissions { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(KeySet::load(&path).unwrap().len(), 1);
        assert!(matches!(
            KeySet::load(&dir.path().join("none")),
            Err(KeyError::Read { .. })
        ));
    }
}
