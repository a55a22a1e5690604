//! `token`: urlsign's token verification, and sign/verify round trips, both
//! directly and through oca's URL handling (`/t/<token>/...` and `?token=`).
//!
//! Input: the first byte picks a mode.
//! - Mode 0: the rest is a raw token; verified against a fixed key set for a
//!   path, client and `now` the tail chooses. Nothing the fuzzer writes can
//!   carry a valid HMAC, so a token that is accepted must be byte for byte
//!   what `sign` makes of the claims it carries (the seeds are real signed
//!   tokens), and those claims must allow the request. oca's access check
//!   must agree with urlsign on every input.
//! - Otherwise: claims are built from the input and signed. Then: the token
//!   verifies for a path and client inside its claims at any `now` up to
//!   expiry (plus skew), exactly as the claims say (expired, path outside,
//!   client outside otherwise); any single-byte change of the token is
//!   refused; and oca's access check accepts the same token carried in the
//!   request-target.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use oca::access::{Access, AccessMode};
use urlsign::{Claims, ClientPrefix, Key, KeySet, Reject, sign, verify};

const SKEW: u64 = 5;

fn keyset() -> KeySet {
    KeySet::new(vec![
        Key::new("k1", &[1u8; 32], None, None).expect("key"),
        Key::new("2026-11a", &[0x5a; 48], None, None).expect("key"),
    ])
    .expect("key set")
}

thread_local! {
    static KEYS: KeySet = keyset();
    static ACCESS: Access = {
        let a = Access::new(AccessMode::Token, None, SKEW).expect("access");
        a.install(keyset());
        a
    };
}

/// A client address in the shapes a socket reports: IPv4, IPv6, or IPv4
/// mapped into IPv6 (a dual-stack listener's view of an IPv4 client).
fn client(u: &mut Unstructured<'_>) -> arbitrary::Result<IpAddr> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        1 => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        _ => IpAddr::V6(Ipv4Addr::from(u.arbitrary::<u32>()?).to_ipv6_mapped()),
    })
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        arbitrary_token(rest);
    } else {
        let _ = round_trip(&mut Unstructured::new(rest));
    }
}

fn arbitrary_token(data: &[u8]) {
    // The token is the first line; the rest picks the request.
    let (token, tail) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut u = Unstructured::new(tail);
    let path = <&str>::arbitrary(&mut u).unwrap_or("/titles/t1/v720/seg-00001.m4s");
    let ip = client(&mut u).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let now = u.arbitrary::<u64>().unwrap_or(1_800_000_000);
    let text = std::str::from_utf8(token).ok();
    let direct = text.map(|t| KEYS.with(|k| verify(k, t, path, ip, now, SKEW)));
    let via_oca = ACCESS.with(|a| a.check(Some(token), path, ip, now));
    assert_eq!(
        via_oca,
        direct.unwrap_or(Err(Reject::Malformed)),
        "oca and urlsign disagree"
    );
    if let (Some(Ok(())), Some(t)) = (direct, text) {
        check_genuine(t, path, ip, now);
    }
}

/// An accepted token must be exactly what `sign` makes of the claims it
/// carries, with a key of the set, and those claims must allow the request.
fn check_genuine(token: &str, path: &str, ip: IpAddr, now: u64) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').next().expect("payload");
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("accepted payload is base64");
    let payload = String::from_utf8(payload).expect("accepted payload is UTF-8");
    let fields: Vec<&str> = payload.split('\n').collect();
    let [version, kid, expires, prefix, client] = fields[..] else {
        panic!("accepted payload {payload:?} has {} fields", fields.len());
    };
    assert_eq!(version, "1");
    let claims = Claims {
        expires: expires.parse().expect("accepted expiry is a number"),
        path_prefix: prefix,
        client: (!client.is_empty()).then(|| client.parse().expect("accepted client prefix")),
    };
    let resigned = KEYS.with(|k| sign(k.get(kid).expect("accepted kid is ours"), &claims));
    assert_eq!(
        resigned.as_deref(),
        Ok(token),
        "accepted a token sign() would not make"
    );
    assert!(
        now <= claims.expires.saturating_add(SKEW),
        "accepted after expiry"
    );
    assert!(
        path.starts_with(prefix),
        "accepted {path:?} outside {prefix:?}"
    );
    if let Some(c) = claims.client {
        assert!(c.contains(ip), "accepted client {ip} outside {c}");
    }
}

fn round_trip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let kid = if u.arbitrary()? { "k1" } else { "2026-11a" };
    let expires: u64 = u.arbitrary()?;
    let prefix: &str = u.arbitrary()?;
    let client_prefix = if u.arbitrary()? {
        let addr = client(u)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        ClientPrefix::new(addr, u.int_in_range(0..=max)?).map(|p| (p, addr))
    } else {
        None
    };
    let claims = Claims {
        expires,
        path_prefix: prefix,
        client: client_prefix.map(|(p, _)| p),
    };
    let token = KEYS.with(|k| sign(k.get(kid).expect("key"), &claims));
    let Ok(token) = token else {
        return Ok(());
    };
    // A client the claims cover: the address the prefix was made from.
    let inside = client_prefix.map_or(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), |(_, a)| a);
    let verify_at =
        |path: &str, ip: IpAddr, now: u64| KEYS.with(|k| verify(k, &token, path, ip, now, SKEW));

    // Valid up to expiry plus skew, and not a second after.
    assert_eq!(
        verify_at(prefix, inside, 0),
        Ok(()),
        "fresh token refused: {claims:?}"
    );
    let last = expires.saturating_add(SKEW);
    assert_eq!(
        verify_at(prefix, inside, last),
        Ok(()),
        "refused at its last second"
    );
    if last < u64::MAX {
        assert_eq!(verify_at(prefix, inside, last + 1), Err(Reject::Expired));
    }
    let now = u.arbitrary::<u64>()?;
    let expected = if now > last {
        Err(Reject::Expired)
    } else {
        Ok(())
    };
    assert_eq!(verify_at(prefix, inside, now), expected, "at {now}");

    // Paths: covered exactly when equal, below a prefix ending in '/', or
    // below the prefix at a segment boundary.
    let path: &str = u.arbitrary()?;
    let covered = path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/')));
    let r = verify_at(path, inside, 0);
    assert_eq!(
        r.is_ok(),
        covered,
        "path {path:?} under prefix {prefix:?}: {r:?}"
    );
    if !covered {
        assert_eq!(r, Err(Reject::PathOutside));
    }
    let below = match prefix.ends_with('/') {
        true => format!("{prefix}seg-00001.m4s"),
        false => format!("{prefix}/seg-00001.m4s"),
    };
    assert_eq!(
        verify_at(&below, inside, 0),
        Ok(()),
        "{below:?} under {prefix:?}"
    );

    // Clients: outside the prefix is refused.
    let other = client(u)?;
    if let Some((p, _)) = client_prefix {
        let r = verify_at(prefix, other, 0);
        if p.contains(other) {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(r, Err(Reject::ClientOutside));
        }
    }

    // Any single-byte change is refused.
    let pos = u.choose_index(token.len())?;
    let byte: u8 = u.arbitrary()?;
    let mut changed = token.clone().into_bytes();
    if changed[pos] != byte {
        changed[pos] = byte;
        if let Ok(text) = std::str::from_utf8(&changed) {
            let r = KEYS.with(|k| verify(k, text, prefix, inside, 0, SKEW));
            assert!(
                r.is_err(),
                "{token:?} changed at {pos} to {byte:#x} still verifies"
            );
        }
        let r = ACCESS.with(|a| a.check(Some(&changed), prefix, inside, 0));
        assert!(r.is_err(), "oca accepted a changed token");
    }

    // The appliance's view: the token in the request-target, the path decoded.
    if prefix.len() > 1
        && prefix
            .bytes()
            .all(|b| b == b'/' || b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        let target = format!("/t/{token}{}", below);
        let (carried, rest) = oca::path::split_token(target.as_bytes());
        assert_eq!(carried, Some(token.as_bytes()));
        let mut key = String::new();
        if oca::path::object_key(rest, &mut key).is_ok() {
            let path = format!("/{key}");
            let r = ACCESS.with(|a| a.check(carried, &path, inside, 0));
            assert_eq!(r, Ok(()), "oca refused {target:?}");
        }
        let query = format!("token={token}&x=1");
        let carried = oca::path::query_param(query.as_bytes(), b"token");
        assert_eq!(carried, Some(token.as_bytes()));
    }
    Ok(())
}
