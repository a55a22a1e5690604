//! Token signing and verification (format in the crate docs).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::keys::{Key, KeySet, valid_kid};
use crate::prefix::ClientPrefix;

/// Longest token accepted; anything longer is malformed without further work.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest path prefix a token may carry.
const MAX_PREFIX_LEN: usize = 512;
/// Decoded payload buffer: base64 of MAX_TOKEN_LEN chars fits with room to spare.
const PAYLOAD_BUF: usize = MAX_TOKEN_LEN * 3 / 4 + 3;
const TAG_LEN: usize = 32;

/// What a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// Unix seconds after which the token is refused.
    pub expires: u64,
    /// The path prefix the token covers, e.g. `/titles/t1/`.
    pub path_prefix: &'a str,
    /// If set, only clients inside this prefix may use the token.
    pub client: Option<ClientPrefix>,
}

/// Why a token was refused. Each has a short code for responses, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Missing,
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    KeyNotValid,
    PathOutside,
    ClientOutside,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Missing,
        Reject::Malformed,
        Reject::UnknownKey,
        Reject::BadSignature,
        Reject::Expired,
        Reject::KeyNotValid,
        Reject::PathOutside,
        Reject::ClientOutside,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reject::Missing => "token-missing",
            Reject::Malformed => "token-malformed",
            Reject::UnknownKey => "token-unknown-key",
            Reject::BadSignature => "token-bad-signature",
            Reject::Expired => "token-expired",
            Reject::KeyNotValid => "token-key-inactive",
            Reject::PathOutside => "token-path",
            Reject::ClientOutside => "token-client",
        }
    }
}

/// Sign `claims` with `key`. Fails (with the reason) only for claims no verifier
/// could accept: a prefix not starting with `/`, too long, or with a newline.
pub fn sign(key: &Key, claims: &Claims<'_>) -> Result<String, &'static str> {
    let p = claims.path_prefix;
    if !p.starts_with('/') {
        return Err("path prefix must start with /");
    }
    if p.len() > MAX_PREFIX_LEN || p.contains('\n') {
        return Err("path prefix too long or contains a newline");
    }
    debug_assert!(valid_kid(&key.id));
    let client = claims.client.map(|c| c.to_string()).unwrap_or_default();
    let payload = format!("1\n{}\n{}\n{}\n{}", key.id, claims.expires, p, client);
    let tag = hmac::sign(&key.hmac, payload.as_bytes());
    let mut token = URL_SAFE_NO_PAD.encode(payload.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    if token.len() > MAX_TOKEN_LEN {
        return Err("token would exceed the maximum length");
    }
    Ok(token)
}

/// Verify `token` for a request of `path` (decoded, starting with `/`) from
/// `client` at `now` (unix seconds), tolerating `skew` seconds of clock
/// difference between signer and verifier. Allocation-free.
pub fn verify(
    keys: &KeySet,
    token: &str,
    path: &str,
    client: IpAddr,
    now: u64,
    skew: u64,
) -> Result<(), Reject> {
    if token.is_empty() {
        return Err(Reject::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Reject::Malformed);
    }
    let (payload_b64, tag_b64) = token.split_once('.').ok_or(Reject::Malformed)?;
    let mut payload_buf = [0u8; PAYLOAD_BUF];
    let n = URL_SAFE_NO_PAD
        .decode_slice(payload_b64, &mut payload_buf)
        .map_err(|_| Reject::Malformed)?;
    let payload = &payload_buf[..n];
    let mut tag_buf = [0u8; 48];
    if tag_b64.len() > 64 {
        return Err(Reject::Malformed);
    }
    let tag_len = URL_SAFE_NO_PAD
        .decode_slice(tag_b64, &mut tag_buf)
        .map_err(|_| Reject::Malformed)?;
    if tag_len != TAG_LEN {
        return Err(Reject::Malformed);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Reject::Malformed)?;
    let mut fields = text.split('\n');
    let (Some("1"), Some(kid), Some(expires), Some(prefix), Some(client_prefix), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Reject::Malformed);
    };
    let key = keys.get(kid).ok_or(Reject::UnknownKey)?;
    // Constant-time comparison; nothing else in the payload is trusted before this.
    hmac::verify(&key.hmac, payload, &tag_buf[..TAG_LEN]).map_err(|_| Reject::BadSignature)?;
    if !key.usable_at(now, skew) {
        return Err(Reject::KeyNotValid);
    }
    let expires: u64 = parse_decimal(expires).ok_or(Reject::Malformed)?;
    if now > expires.saturating_add(skew) {
        return Err(Reject::Expired);
    }
    if !covers(prefix, path) {
        return Err(Reject::PathOutside);
    }
    if !client_prefix.is_empty() {
        let net: ClientPrefix = client_prefix.parse().map_err(|_| Reject::Malformed)?;
        if !net.contains(client) {
            return Err(Reject::ClientOutside);
        }
    }
    Ok(())
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether a token for `prefix` covers `path`: equal, or a prefix that ends at a
/// segment boundary, so `/titles/t1` does not grant `/titles/t10/…`.
fn covers(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn keyset() -> KeySet {
        KeySet::new(vec![
            Key::new("k1", &[1u8; 32], None, Some(NOW + 100)).unwrap(),
            Key::new("k2", &[2u8; 32], Some(NOW - 10), None).unwrap(),
        ])
        .unwrap()
    }

    fn token(kid: &str, expires: u64, prefix: &str, client: Option<&str>) -> String {
        let ks = keyset();
        let claims = Claims {
            expires,
            path_prefix: prefix,
            client: client.map(|c| c.parse().unwrap()),
        };
        sign(ks.get(kid).unwrap(), &claims).unwrap()
    }

    #[test]
    fn verification_table() {
        let ks = keyset();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let other_key = KeySet::new(vec![Key::new("k1", &[9u8; 32], None, None).unwrap()]).unwrap();
        let forged = sign(
            other_key.get("k1").unwrap(),
            &Claims {
                expires: NOW + 60,
                path_prefix: "/",
                client: None,
            },
        )
        .unwrap();
        let unknown = sign(
            &Key::new("k9", &[1u8; 32], None, None).unwrap(),
            &Claims {
                expires: NOW + 60,
                path_prefix: "/",
                client: None,
            },
        )
        .unwrap();
        let good = token("k1", NOW + 60, "/titles/t1/", None);
        let cases: Vec<(&str, String, &str, u64, Result<(), Reject>)> = vec![
            (
                "valid",
                good.clone(),
                "/titles/t1/v720/seg-1.m4s",
                NOW,
                Ok(()),
            ),
            (
                "valid, second key",
                token("k2", NOW + 60, "/titles/t1/", None),
                "/titles/t1/a.m4s",
                NOW,
                Ok(()),
            ),
            (
                "missing",
                String::new(),
                "/titles/t1/a",
                NOW,
                Err(Reject::Missing),
            ),
            (
                "garbage",
                "not a token".into(),
                "/titles/t1/a",
                NOW,
                Err(Reject::Malformed),
            ),
            (
                "no tag",
                good.split('.').next().unwrap().into(),
                "/titles/t1/a",
                NOW,
                Err(Reject::Malformed),
            ),
            (
                "short tag",
                format!("{}.AAAA", good.split('.').next().unwrap()),
                "/titles/t1/a",
                NOW,
                Err(Reject::Malformed),
            ),
            (
                "too long",
                "A".repeat(MAX_TOKEN_LEN + 1),
                "/titles/t1/a",
                NOW,
                Err(Reject::Malformed),
            ),
            (
                "unknown key",
                unknown,
                "/titles/t1/a",
                NOW,
                Err(Reject::UnknownKey),
            ),
            (
                "forged",
                forged,
                "/titles/t1/a",
                NOW,
                Err(Reject::BadSignature),
            ),
            (
                "expired",
                good.clone(),
                "/titles/t1/a",
                NOW + 66,
                Err(Reject::Expired),
            ),
            (
                "expired within skew",
                good.clone(),
                "/titles/t1/a",
                NOW + 64,
                Ok(()),
            ),
            (
                "retired key",
                token("k1", NOW + 1000, "/", None),
                "/a",
                NOW + 200,
                Err(Reject::KeyNotValid),
            ),
            (
                "key not yet valid",
                token("k2", NOW + 60, "/", None),
                "/a",
                NOW - 30,
                Err(Reject::KeyNotValid),
            ),
            (
                "key not yet valid within skew",
                token("k2", NOW + 60, "/", None),
                "/a",
                NOW - 12,
                Ok(()),
            ),
            (
                "other title",
                good.clone(),
                "/titles/t2/a.m4s",
                NOW,
                Err(Reject::PathOutside),
            ),
            (
                "prefix is not a segment boundary",
                token("k1", NOW + 60, "/titles/t1", None),
                "/titles/t10/a",
                NOW,
                Err(Reject::PathOutside),
            ),
            (
                "prefix without slash covers its subtree",
                token("k1", NOW + 60, "/titles/t1", None),
                "/titles/t1/a",
                NOW,
                Ok(()),
            ),
            (
                "exact path",
                token("k1", NOW + 60, "/titles/t1/a.m4s", None),
                "/titles/t1/a.m4s",
                NOW,
                Ok(()),
            ),
            (
                "client inside",
                token("k1", NOW + 60, "/", Some("203.0.113.0/24")),
                "/a",
                NOW,
                Ok(()),
            ),
            (
                "client outside",
                token("k1", NOW + 60, "/", Some("198.51.100.0/24")),
                "/a",
                NOW,
                Err(Reject::ClientOutside),
            ),
        ];
        for (name, tok, path, now, want) in cases {
            assert_eq!(verify(&ks, &tok, path, client, now, 5), want, "{name}");
        }
    }

    #[test]
    fn sign_rejects_unverifiable_claims() {
        let ks = keyset();
        let k = ks.get("k1").unwrap();
        for bad in ["titles/", "/a\nb", &format!("/{}", "a".repeat(600))] {
            assert!(
                sign(
                    k,
                    &Claims {
                        expires: 1,
                        path_prefix: bad,
                        client: None
                    }
                )
                .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<_> = Reject::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reject::ALL.len());
    }

    proptest::proptest! {
        /// Any single-bit change to a valid token is refused.
        #[test]
        fn any_bit_flip_is_rejected(bit in 0usize..(8 * 200), expires in NOW..NOW + 10_000, client in proptest::option::of(0u8..=32)) {
            let ks = keyset();
            let client_prefix = client.map(|len| format!("203.0.113.0/{len}"));
            let tok = token("k2", expires, "/titles/t1/", client_prefix.as_deref());
            let mut bytes = tok.clone().into_bytes();
            let bit = bit % (8 * bytes.len());
            bytes[bit / 8] ^= 1 << (bit % 8);
            let ip: IpAddr = "203.0.113.0".parse().unwrap();
            proptest::prop_assert_eq!(verify(&ks, &tok, "/titles/t1/a.m4s", ip, NOW, 0), Ok(()));
            // A flip that breaks UTF-8 can never reach the verifier as a &str.
            if let Ok(flipped) = String::from_utf8(bytes) {
                proptest::prop_assert!(verify(&ks, &flipped, "/titles/t1/a.m4s", ip, NOW, 0).is_err());
            }
        }

        /// Verification never panics, whatever the input.
        #[test]
        fn arbitrary_input_never_panics(tok in ".{0,1200}", path in "/[a-z0-9/]{0,40}") {
            let _ = verify(&keyset(), &tok, &path, "::1".parse().unwrap(), NOW, 5);
        }
    }
}
