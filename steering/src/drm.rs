//! Content keys and W3C Clear Key licences.
//!
//! - **Keys at rest.** A title's content key is stored sealed with
//!   AES-256-GCM under the key-encryption key (`drm.key_file`, 32 bytes as hex,
//!   readable by its owner only), with the title and key ID as associated
//!   data, so a sealed key moved to another title's row does not open. Keys
//!   never reach appliances, logs or metrics (`ContentKey`'s `Debug` shows the
//!   key ID only).
//! - **Packaged keys.** `oca-pack encode --encrypt` writes the key ID into the
//!   title (`titles/<id>/drm.json`) and the key beside the titles
//!   (`keys/<id>.json`); `catalog import` reads both and stores the key sealed.
//! - **Licences.** A Clear Key licence request (`{"kids": [...], "type":
//!   "temporary"}`, key IDs base64url) is answered with the JSON Web Key set of
//!   exactly the requested keys, if every one belongs to the play's title.
//!
//! Pure but for the random nonce of `seal` and reading the files.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead;
use serde::Deserialize;

/// A content key and its ID.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContentKey {
    pub kid: [u8; 16],
    pub key: [u8; 16],
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKey")
            .field("kid", &hex::encode(self.kid))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DrmError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("a stored content key of {0} does not open with this key-encryption key")]
    Unseal(String),
}

fn file_error(path: &Path, reason: impl Into<String>) -> DrmError {
    DrmError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    let v = hex::decode(s.trim()).ok()?;
    v.try_into().ok()
}

/// The text of `path`, a file that must be readable by its owner only.
fn read_private(path: &Path) -> Result<String, DrmError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(file_error(
            path,
            format!("readable by others (mode {mode:o}); chmod 600 it"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))
}

/// A service credential from `path` (one line, readable by its owner only).
pub fn read_credential(path: &Path) -> Result<String, DrmError> {
    control_client::read_token(path).map_err(|reason| file_error(path, reason))
}

/// The key-encryption key.
pub struct Kek(aead::LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Kek> {
        let bytes = hex::decode(text.trim()).ok()?;
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes).ok()?;
        (bytes.len() == 32).then(|| Kek(aead::LessSafeKey::new(key)))
    }

    /// Read from `path`, which must be readable by its owner only.
    pub fn load(path: &Path) -> Result<Kek, DrmError> {
        let text = read_private(path)?;
        Kek::from_hex(&text).ok_or_else(|| {
            file_error(
                path,
                "expected 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`",
            )
        })
    }

    /// `key` sealed for `title`: base64url of nonce, ciphertext and tag.
    pub fn seal(&self, title: &str, key: &ContentKey) -> String {
        let mut nonce = [0u8; aead::NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .expect("the system RNG works");
        let mut data = key.key.to_vec();
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(title, &key.kid)),
                &mut data,
            )
            .expect("AES-GCM seals 16 bytes");
        URL_SAFE_NO_PAD.encode([&nonce[..], &data].concat())
    }

    /// The key of `title` with ID `kid` from what `seal` made.
    pub fn unseal(&self, title: &str, kid: [u8; 16], sealed: &str) -> Result<ContentKey, DrmError> {
        let fail = || DrmError::Unseal(title.to_owned());
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| fail())?;
        if bytes.len() < aead::NONCE_LEN {
            return Err(fail());
        }
        let (nonce, data) = bytes.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aead::Aad::from(aad(title, &kid)), &mut data)
            .map_err(|_| fail())?;
        let key: [u8; 16] = plain.try_into().map_err(|_| fail())?;
        Ok(ContentKey { kid, key })
    }
}

fn aad(title: &str, kid: &[u8; 16]) -> Vec<u8> {
    [title.as_bytes(), &[0], kid].concat()
}

/// What `titles/<id>/drm.json` says: the scheme and the key ID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Protection {
    pub scheme: String,
    pub kid: String,
}

impl Protection {
    pub fn kid_bytes(&self) -> Option<[u8; 16]> {
        hex16(&self.kid)
    }
}

/// `titles/<id>/drm.json` of a packaged title, if it is protected.
pub fn protection(title_dir: &Path) -> Result<Option<Protection>, DrmError> {
    let path = title_dir.join("drm.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&path, e.to_string())),
    };
    let p: Protection =
        serde_json::from_str(&text).map_err(|e| file_error(&path, e.to_string()))?;
    if p.scheme != "cenc" {
        return Err(file_error(
            &path,
            format!("scheme {:?}: only cenc is supported", p.scheme),
        ));
    }
    if p.kid_bytes().is_none() {
        return Err(file_error(&path, "kid must be 32 hex digits"));
    }
    Ok(Some(p))
}

#[derive(Deserialize)]
struct PackagedKey {
    title: String,
    kid: String,
    key: String,
}

/// The content key of protected title `id` from `keys/<id>.json` under the
/// packaged directory `dir`, checked against the title's key ID.
pub fn packaged_key(dir: &Path, id: &str, protection: &Protection) -> Result<ContentKey, DrmError> {
    let path = dir.join("keys").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        file_error(
            &path,
            format!(
                "{e}: title {id} is encrypted (its drm.json names a key) and its key must be here"
            ),
        )
    })?;
    let k: PackagedKey =
        serde_json::from_str(&text).map_err(|e| file_error(&path, e.to_string()))?;
    let (Some(kid), Some(key)) = (hex16(&k.kid), hex16(&k.key)) else {
        return Err(file_error(&path, "kid and key must be 32 hex digits each"));
    };
    if k.title != id || Some(kid) != protection.kid_bytes() {
        return Err(file_error(
            &path,
            format!(
                "the key is for {} {}, the title {id} needs key ID {}",
                k.title, k.kid, protection.kid
            ),
        ));
    }
    Ok(ContentKey { kid, key })
}

/// Why a licence request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("key ID {0} is not one of this title's")]
    KidNotInTitle(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    kids: Vec<String>,
    #[serde(rename = "type", default)]
    session: Option<String>,
}

/// Key IDs a Clear Key licence request asks for (1 to 16, each once).
pub fn parse_request(body: &[u8]) -> Result<Vec<[u8; 16]>, LicenceError> {
    let bad = |m: String| LicenceError::BadRequest(m);
    let r: Request = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "not a Clear Key licence request ({{\"kids\": [...], \"type\": \"temporary\"}}): {e}"
        ))
    })?;
    if let Some(t) = &r.session
        && t != "temporary"
    {
        return Err(bad(format!(
            "session type {t:?}: only temporary sessions are licensed"
        )));
    }
    if r.kids.is_empty() || r.kids.len() > 16 {
        return Err(bad(format!("{} key IDs: ask for 1 to 16", r.kids.len())));
    }
    let mut out: Vec<[u8; 16]> = Vec::with_capacity(r.kids.len());
    for k in &r.kids {
        let kid: [u8; 16] = URL_SAFE_NO_PAD
            .decode(k.trim_end_matches('='))
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad(format!("key ID {k:?} is not 16 bytes of base64url")))?;
        if !out.contains(&kid) {
            out.push(kid);
        }
    }
    Ok(out)
}

/// The JSON Web Key set for `requested`, all of which must be in `keys`.
pub fn licence(
    keys: &[ContentKey],
    requested: &[[u8; 16]],
) -> Result<serde_json::Value, LicenceError> {
    let mut jwks = Vec::with_capacity(requested.len());
    for kid in requested {
        let k = keys
            .iter()
            .find(|k| &k.kid == kid)
            .ok_or_else(|| LicenceError::KidNotInTitle(URL_SAFE_NO_PAD.encode(kid)))?;
        jwks.push(serde_json::json!({
            "kty": "oct",
            "kid": URL_SAFE_NO_PAD.encode(k.kid),
            "k": URL_SAFE_NO_PAD.encode(k.key),
        }));
    }
    Ok(serde_json::json!({"keys": jwks, "type": "temporary"}))
}

#[cfg(test)]
mod tests;
