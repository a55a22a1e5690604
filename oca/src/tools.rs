//! Operator subcommands that are not the daemon: `oca sign` and `oca keygen`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use urlsign::{Claims, ClientPrefix, KeySet};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sign a token for `prefix` with key `kid` (or the current signing key) from
/// the key file; returns the token, or a URL if `base_url` is given.
pub fn sign(
    keys: &Path,
    kid: Option<&str>,
    prefix: &str,
    ttl: Duration,
    client: Option<ClientPrefix>,
    base_url: Option<&str>,
) -> Result<String, String> {
    let set = KeySet::load(keys).map_err(|e| e.to_string())?;
    let now = unix_now();
    let key = match kid {
        Some(id) => set
            .get(id)
            .ok_or_else(|| format!("no key {id:?} in {}", keys.display()))?,
        None => set
            .signing_key(now)
            .ok_or_else(|| format!("no key in {} is valid now", keys.display()))?,
    };
    let claims = Claims {
        expires: now + ttl.as_secs(),
        path_prefix: prefix,
        client,
    };
    let token = urlsign::sign(key, &claims).map_err(str::to_owned)?;
    Ok(match base_url {
        Some(base) => format!("{}/t/{token}{prefix}", base.trim_end_matches('/')),
        None => token,
    })
}

/// A `[[key]]` entry with a fresh random secret, ready to append to a key file.
pub fn keygen(id: &str, not_before: Option<u64>, not_after: Option<u64>) -> Result<String, String> {
    let secret = urlsign::generate_secret();
    // Round-trip through the parser so a bad id is refused here, not at load time.
    let mut entry = format!("[[key]]\nid = \"{id}\"\nsecret = \"{secret}\"\n");
    if let Some(t) = not_before {
        entry += &format!("not_before = {t}\n");
    }
    if let Some(t) = not_after {
        entry += &format!("not_after = {t}\n");
    }
    KeySet::from_toml(&entry).map_err(|e| e.to_string())?;
    Ok(entry)
}
